using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// Custom headers per subscription (<c>headers</c>): sent with every attempt and with the test
/// send, refused names answered with problem details naming the header (and nothing stored),
/// credential values masked in every answer and kept by a PATCH that sends the mask back.
/// </summary>
public sealed class SubscriptionHeadersTests
{
    private const string Token = "Bearer s3cr3t-gateway-token-0123456789";

    private static async Task<JsonNode> CreateAsync(HttpClient api, string url, JsonObject extra, int retryCount = 0)
    {
        var body = new JsonObject { ["url"] = url, ["event_types"] = new JsonArray("email.received"), ["retry_count"] = retryCount };
        foreach (var (name, value) in extra) body[name] = value?.DeepClone();
        var response = await api.PostJsonAsync("/api/webhooks", body.ToJsonString());
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created), await response.Content.ReadAsStringAsync());
        return await response.JsonAsync();
    }

    [Test]
    public async Task Headers_arrive_on_every_attempt_and_on_the_test_send_and_credentials_are_shown_masked()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await CreateAsync(api, receiver.Url, new JsonObject
        {
            // Content-Language and Expires are content headers to .NET: sent all the same.
            ["headers"] = new JsonObject { ["Authorization"] = Token, ["X-Tenant"] = "acme", ["X-Api-Key"] = "k-123", ["Content-Language"] = "en", ["Expires"] = "0" },
        }, retryCount: 1);

        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, TimeSpan.FromSeconds(60)), Is.True);
        var test = await api.PostAsync($"/api/webhooks/{created.Id()}/test", null);
        Assert.That((await test.JsonAsync())["success"]!.GetValue<bool>(), Is.True);

        var requests = receiver.Requests;
        Assert.That(requests, Has.Count.EqualTo(3), "two attempts and the test send");
        var shown = (await (await api.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync())["headers"]!;
        var listed = (await (await api.GetAsync("/api/webhooks")).JsonAsync())["data"]![0]!["headers"]!;
        Assert.Multiple(() =>
        {
            foreach (var request in requests)
            {
                Assert.That(request.Headers["authorization"], Is.EqualTo(Token));
                Assert.That(request.Headers["x-tenant"], Is.EqualTo("acme"));
                Assert.That(request.Headers["x-api-key"], Is.EqualTo("k-123"));
                Assert.That(request.Headers["content-language"], Is.EqualTo("en"));
                Assert.That(request.Headers["expires"], Is.EqualTo("0"));
                Assert.That(request.Headers, Does.Not.ContainKey("traceparent"), "no trace context to receivers, the test send included");
                Assert.That(request.Headers, Does.ContainKey("webhook-signature"), "the dispatcher's own headers are still there");
            }
            foreach (var answer in new[] { created["headers"]!, shown, listed })
            {
                Assert.That(answer["Authorization"]!.GetValue<string>(), Is.EqualTo("Bear…(redacted)"));
                Assert.That(answer["X-Api-Key"]!.GetValue<string>(), Is.EqualTo("…(redacted)"), "short values show nothing of themselves");
                Assert.That(answer["X-Tenant"]!.GetValue<string>(), Is.EqualTo("acme"), "other values are shown");
                Assert.That(answer.ToJsonString(), Does.Not.Contain("s3cr3t"));
            }
        });
    }

    [Test]
    public async Task A_receiver_echoing_the_request_headers_leaves_no_credential_in_the_history()
    {
        // A debug endpoint or a proxy's error page that answers with the request's headers, in
        // its body and in its reason phrase.
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            var echoed = string.Join("\n", c.Request.Headers.Select(h => $"{h.Key}: {h.Value}"));
            c.Response.StatusCode = 500;
            c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseFeature>()!.ReasonPhrase = "Denied " + c.Request.Headers.Authorization;
            // As PHP's json_encode (\/) and System.Text.Json's default encoder (\u002B) write the values.
            await c.Response.WriteAsync("{\"error\": \"denied\", \"token\": \"s3cr3t-gateway-token-0123456789\", \"seen\": \"" + echoed.Replace("\"", "'").Replace("\n", " | ") + "\", " +
                "\"php\": \"" + c.Request.Headers["X-Api-Key"].ToString().Replace("/", "\\/") + "\", " +
                "\"dotnet\": " + System.Text.Json.JsonSerializer.Serialize(c.Request.Headers["X-Api-Key"].ToString()) + ", " +
                "\"words\": \"apikeyk+y/12345ok, k+y/1234 ordinary\"}");
        });
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await CreateAsync(api, receiver.Url, new JsonObject
        {
            ["headers"] = new JsonObject { ["Authorization"] = Token, ["X-Api-Key"] = "k+y/12345", ["X-Tenant"] = "acme-tenant" },
        });

        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Failed, TimeSpan.FromSeconds(60)), Is.True);
        var history = await (await api.GetAsync($"/api/webhooks/{created.Id()}/deliveries?include_attempts=true")).Content.ReadAsStringAsync();
        var attempts = await Dispatcher.QueryAsync(db => db.DeliveryAttempts.AsNoTracking()
            .Where(a => db.Deliveries.Any(d => d.Id == a.DeliveryId && d.SubscriptionId == created.Id())).ToListAsync());
        var stored = string.Join("\n", attempts.Select(a => a.ResponseExcerpt + " " + a.ErrorMessage));

        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests.Single().Headers["authorization"], Is.EqualTo(Token), "the value was sent");
            Assert.That(stored, Does.Contain("denied").And.Contain("acme-tenant"), "the rest of the answer is kept, other header values included");
            Assert.That(stored, Does.Contain("…(redacted)"));
            Assert.That(stored, Does.Not.Contain("s3cr3t-gateway-token"), "neither the whole value nor its token part");
            Assert.That(history, Does.Not.Contain("s3cr3t-gateway-token"));
            Assert.That(stored, Does.Contain("apikeyk+y/12345ok").And.Contain("k+y/1234 ordinary"), "a value inside a longer word, and other text, left alone");
            Assert.That(stored.Replace("apikeyk+y/12345ok", ""), Does.Not.Contain("12345"), "the key as sent, as PHP and System.Text.Json escape it");
        });
    }

    [Test]
    public async Task A_patch_sending_the_mask_back_keeps_the_value_and_a_new_value_replaces_it()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        using var api = TestTokens.Client(Events.NewUser());
        var created = await CreateAsync(api, receiver.Url, new JsonObject { ["headers"] = new JsonObject { ["Authorization"] = Token, ["X-A"] = "1" } });
        var path = $"/api/webhooks/{created.Id()}";

        var kept = await api.PatchJsonAsync(path, """{"headers": {"Authorization": "Bear…(redacted)", "X-B": "2"}}""");
        Assert.That(kept.StatusCode, Is.EqualTo(HttpStatusCode.OK), await kept.Content.ReadAsStringAsync());
        await api.PostAsync($"{path}/test", null);
        var replaced = await api.PatchJsonAsync(path, """{"headers": {"Authorization": "Bearer another-token-000000000"}}""");
        await api.PostAsync($"{path}/test", null);
        var removed = await api.PatchJsonAsync(path, """{"headers": null}""");
        await api.PostAsync($"{path}/test", null);

        var r = receiver.Requests;
        Assert.Multiple(async () =>
        {
            Assert.That((await kept.JsonAsync())["headers"]!.AsObject().Select(h => h.Key), Is.EquivalentTo(new[] { "Authorization", "X-B" }));
            Assert.That(r[0].Headers["authorization"], Is.EqualTo(Token), "the mask kept the stored value");
            Assert.That(r[0].Headers, Does.Not.ContainKey("x-a"), "headers left out of a PATCH are removed");
            Assert.That(r[0].Headers["x-b"], Is.EqualTo("2"));
            Assert.That(replaced.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(r[1].Headers["authorization"], Is.EqualTo("Bearer another-token-000000000"));
            Assert.That((await removed.JsonAsync())["headers"], Is.Null);
            Assert.That(r[2].Headers, Does.Not.ContainKey("authorization"));
        });
    }

    [Test]
    public async Task Credential_values_never_appear_in_the_service_log_even_at_trace_level()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Logging:LogLevel:Default"] = "Trace",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace",
            ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "Trace",
            ["Logging:LogLevel:System.Net.Http.HttpClient"] = "Trace",
        });
        var address = await service.WaitUntilServingAsync(TimeSpan.FromSeconds(60));
        Assert.That(address, Is.Not.Null, service.Output);
        using var api = new HttpClient { BaseAddress = address };
        api.DefaultRequestHeaders.Authorization = new("Bearer", TestTokens.For(Events.NewUser()));

        var created = await CreateAsync(api, receiver.Url, new JsonObject { ["headers"] = new JsonObject { ["Authorization"] = Token } });
        var path = $"/api/webhooks/{created.Id()}";
        await api.PostAsync($"{path}/test", null);
        await api.GetAsync(path);
        await api.PatchJsonAsync(path, """{"headers": {"Authorization": "Bear…(redacted)", "X-B": "2"}}""");
        var refused = await api.PatchJsonAsync(path, """{"headers": {"Authorization": "Bearer s3cr3t-refused\u0001"}}""");
        await api.PostAsync($"{path}/test", null);

        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests.Select(r => r.Headers["authorization"]), Is.All.EqualTo(Token), "the value was used");
            Assert.That(receiver.Requests, Has.Count.EqualTo(2));
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(service.Output, Does.Contain("webhook_subscriptions"), "trace logging was on");
            Assert.That(service.Output, Does.Not.Contain("s3cr3t"), "no credential value in the log");
        });
    }

    private static IEnumerable<TestCaseData> RefusedHeaders()
    {
        foreach (var name in new[] { "webhook-signature", "Webhook-Id", "X-Webhook-Signature", "X-Webhook-Event", "Host", "Content-Length",
                     "Transfer-Encoding", "Connection", "Content-Type", "Upgrade" })
            yield return new TestCaseData($$"""{"{{name}}": "x"}""", name).SetName($"The header {name} is refused and named");
        yield return new TestCaseData("""{"X-Bad Name": "x"}""", "X-Bad Name").SetName("A header name with a space is refused");
        yield return new TestCaseData("""{"X-Inject": "a\r\nX-Other: b"}""", "X-Inject").SetName("A value with CR LF is refused");
        yield return new TestCaseData("""{"X-Long": "{{long}}"}""".Replace("{{long}}", new string('a', 1025)), "X-Long")
            .SetName("A value over 1 KiB is refused");
        yield return new TestCaseData("{" + string.Join(",", Enumerable.Range(0, 21).Select(i => $"\"X-H{i}\": \"v\"")) + "}", "20")
            .SetName("More than 20 headers are refused");
        yield return new TestCaseData("{" + string.Join(",", Enumerable.Range(0, 9).Select(i => $"\"X-H{i}\": \"{new string('v', 1000)}\"")) + "}", "8192")
            .SetName("More than 8 KiB of headers are refused");
        // Only the service seals: a value shaped like a sealed one (copied from a dump) is never opened for a tenant.
        yield return new TestCaseData("""{"X-Tenant": "sealed:v1:0123abcd:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}""", "X-Tenant")
            .SetName("A value shaped like a sealed one is refused");
        yield return new TestCaseData("""{"X-Api-Key": "SEALED:v1:deadbeef:AAAA"}""", "X-Api-Key")
            .SetName("A credential value shaped like a sealed one is refused");
        yield return new TestCaseData("""{"Authorization": "Bear…(redacted)"}""", "Authorization")
            .SetName("A masked value with nothing stored to keep is refused");
        yield return new TestCaseData("""{"X_Webhook_Signature": "sha256=00"}""", "X_Webhook_Signature")
            .SetName("A reserved name spelt with underscores is refused");
        yield return new TestCaseData("""{"Transfer_Encoding": "chunked"}""", "Transfer_Encoding")
            .SetName("An HTTP framing name spelt with underscores is refused");
    }

    [TestCaseSource(nameof(RefusedHeaders))]
    public async Task Refused_headers_answer_400_naming_the_header_and_change_nothing(string headers, string named)
    {
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await CreateAsync(api, "https://example.com/hook", new JsonObject { ["headers"] = new JsonObject { ["X-Kept"] = "yes" } });

        var create = await api.PostJsonAsync("/api/webhooks", $$"""{"url": "https://example.com/x", "event_types": ["email.received"], "headers": {{headers}}}""");
        var patch = await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"headers": {{headers}}, "description": "changed"}""");

        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().Where(s => s.UserId == user).ToListAsync());
        Assert.Multiple(async () =>
        {
            foreach (var answer in new[] { create, patch })
            {
                Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
                Assert.That(answer.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
                var problem = await answer.JsonAsync();
                Assert.That(problem.ErrorFields(), Does.Contain("headers"));
                Assert.That(problem["errors"]!["headers"]!.ToJsonString(), Does.Contain(named));
            }
            Assert.That(stored, Has.Count.EqualTo(1), "the refused create stored nothing");
            Assert.That(stored[0].Description, Is.Null, "the refused PATCH changed nothing");
            Assert.That(stored[0].Headers, Does.Contain("X-Kept"));
        });
    }
}
