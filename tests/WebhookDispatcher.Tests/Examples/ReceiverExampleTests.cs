using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Notely.Events;
using Notely.WebhookDemo;
using StandardWebhooks;
using StandardWebhooks.Diagnostics;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Examples;

/// <summary>
/// The receiver examples (Python standard library, Node's node:crypto, the C# one) and, as an
/// independent check of our signatures, the StandardWebhooks NuGet package — all fed real
/// deliveries captured before and during a secret rotation, then the same deliveries tampered with
/// or re-signed with a stale timestamp.
/// </summary>
[NonParallelizable]
public sealed class ReceiverExampleTests
{
    private string _oldSecret = "", _newSecret = "";
    private ReceivedRequest _beforeRotation = null!, _duringRotation = null!;
    private readonly List<IAsyncDisposable> _processes = [];

    public static IEnumerable<TestCaseData> Verifiers() =>
        new[] { "python", "node", "csharp-example", "StandardWebhooks-nuget" }.Select(v => new TestCaseData(v).SetArgDisplayNames(v));

    [OneTimeSetUp]
    public async Task CaptureRealDeliveriesAsync()
    {
        await using var capture = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await api.CreateAsync(capture.Url, ["email.received"]);
        _oldSecret = created["secret"]!.GetValue<string>();

        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        var rotated = await api.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null);
        Assert.That(rotated.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        _newSecret = (await rotated.JsonAsync())["secret"]!.GetValue<string>();
        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(2, TimeSpan.FromSeconds(30)), Is.True);

        (_beforeRotation, _duringRotation) = (capture.Requests[0], capture.Requests[1]);
        Assert.That(_duringRotation.Headers["webhook-signature"].Split(' '), Has.Length.EqualTo(2), "old and new secret sign during the rotation");
    }

    [OneTimeTearDown]
    public async Task StopReceiversAsync()
    {
        foreach (var process in _processes) await process.DisposeAsync();
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_real_delivery_verifies_with_its_secret_on_both_signatures(string verifier)
    {
        var result = await VerifyAsync(verifier, [_oldSecret], _beforeRotation);

        Assert.That(result.Ok, Is.True, result.Reason);
        Assert.That(result.Legacy, Is.Not.False, "X-Webhook-Signature verifies too");
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task During_a_rotation_a_delivery_verifies_with_the_old_secret_and_with_the_new_one(string verifier)
    {
        var withOld = await VerifyAsync(verifier, [_oldSecret], _duringRotation);
        var withNew = await VerifyAsync(verifier, [_newSecret], _duringRotation);
        var newOnBefore = await VerifyAsync(verifier, [_newSecret], _beforeRotation);

        Assert.Multiple(() =>
        {
            Assert.That(withOld.Ok, Is.True, "old secret: " + withOld.Reason);
            Assert.That(withNew.Ok, Is.True, "new secret: " + withNew.Reason);
            Assert.That(withNew.Legacy, Is.Not.False, "X-Webhook-Signature carries the new secret");
            Assert.That(newOnBefore.Ok, Is.False, "a delivery from before the rotation was not signed with the new secret");
        });
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_tampered_body_is_rejected(string verifier)
    {
        var body = Encoding.UTF8.GetString(_duringRotation.Body).Replace("\"Quarterly report\"", "\"Quarterly rep0rt\"");
        Assert.That(body, Is.Not.EqualTo(Encoding.UTF8.GetString(_duringRotation.Body)));

        var result = await VerifyAsync(verifier, [_oldSecret, _newSecret], _duringRotation with { Body = Encoding.UTF8.GetBytes(body) });

        Assert.That(result.Ok, Is.False);
        Assert.That(result.Legacy, Is.Not.True);
        if (result.Reason is not null) Assert.That(result.Reason, Does.Contain("signature").IgnoreCase);
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_stale_or_future_timestamp_is_rejected_even_when_correctly_signed(string verifier)
    {
        foreach (var skew in new[] { TimeSpan.FromMinutes(-10), TimeSpan.FromMinutes(10) })
        {
            var request = Resign(_beforeRotation, _oldSecret, DateTimeOffset.UtcNow + skew);

            var result = await VerifyAsync(verifier, [_oldSecret], request);

            Assert.That(result.Ok, Is.False, $"timestamp {skew} away");
            if (result.Reason is not null) Assert.That(result.Reason, Does.Contain("timestamp").IgnoreCase);
        }
        Assert.That((await VerifyAsync(verifier, [_oldSecret], Resign(_beforeRotation, _oldSecret, DateTimeOffset.UtcNow.AddMinutes(-4)))).Ok,
            Is.True, "4 minutes is within the 5-minute tolerance");
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_real_batch_delivery_verifies_like_any_delivery(string verifier)
    {
        await using var capture = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await api.PostAsJsonAsync("/api/webhooks",
            new { url = capture.Url, event_types = new[] { "email.received" }, batch = new { max_events = 2, max_wait_ms = 10_000 } });
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        var secret = (await created.JsonAsync())["secret"]!.GetValue<string>();
        for (var i = 0; i < 2; i++)
            await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        var batch = capture.Requests[0];
        Assert.That(batch.Headers["x-webhook-event"], Is.EqualTo(BatchBody.EventType));

        var result = await VerifyAsync(verifier, [secret], batch);

        Assert.That(result.Ok, Is.True, result.Reason);
        Assert.That(result.Legacy, Is.Not.False, "X-Webhook-Signature verifies too");
    }

    [TestCase("python", false, TestName = "The_Python_receiver_example_answers_200_to_a_live_delivery_and_the_delivery_succeeds")]
    [TestCase("node", false, TestName = "The_Node_receiver_example_answers_200_to_a_live_delivery_and_the_delivery_succeeds")]
    [TestCase("python", true, TestName = "The_Python_receiver_example_answers_200_to_a_plain_text_delivery_of_a_template")]
    [TestCase("node", true, TestName = "The_Node_receiver_example_answers_200_to_a_plain_text_delivery_of_a_template")]
    public async Task Live_delivery(string verifier, bool textTemplate)
    {
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        // Create first (the secret is issued then), start the receiver with it, then point the subscription at it.
        var response = await api.PostAsJsonAsync("/api/webhooks", textTemplate
            ? new { url = "https://example.com/placeholder", event_types = new[] { "task.completed" }, template = (object?)new { builtin = "text" } }
            : new { url = "https://example.com/placeholder", event_types = new[] { "task.completed" }, template = (object?)null });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created), await response.Content.ReadAsStringAsync());
        var created = await response.JsonAsync();
        var url = await StartReceiverAsync(verifier, [created["secret"]!.GetValue<string>()]);
        Assert.That((await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"url": "{{url}}/notely"}""")).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        await Dispatcher.PublishAsync((TaskCompleted)EventSchemas.Example(EventCatalog.For<TaskCompleted>(), user, Guid.NewGuid()));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True,
            (await Dispatcher.DeliveriesAsync(created.Id())).SingleOrDefault()?.ErrorMessage);
        var answer = JsonNode.Parse((await Dispatcher.DeliveriesAsync(created.Id())).Single().ResponseBody!)!;
        Assert.Multiple(() =>
        {
            Assert.That(answer["ok"]!.GetValue<bool>(), Is.True);
            Assert.That(answer["event_type"]!.GetValue<string>(), Is.EqualTo("task.completed"));
            Assert.That(answer["x_webhook_signature"]!.GetValue<bool>(), Is.True);
        });
    }

    /// <summary>The request as if sent at <paramref name="at"/>: a new webhook-timestamp and signatures made with the secret.</summary>
    private static ReceivedRequest Resign(ReceivedRequest request, string secret, DateTimeOffset at)
    {
        var timestamp = at.ToUnixTimeSeconds();
        var headers = new Dictionary<string, string>(request.Headers)
        {
            ["webhook-timestamp"] = timestamp.ToString(CultureInfo.InvariantCulture),
            ["webhook-signature"] = WebhookSigner.StandardSignature(request.Headers["webhook-id"], timestamp, request.Body, secret),
        };
        return request with { Headers = headers };
    }

    private sealed record Verdict(bool Ok, string? Reason, bool? Legacy);

    private async Task<Verdict> VerifyAsync(string verifier, string[] secrets, ReceivedRequest request)
    {
        switch (verifier)
        {
            case "csharp-example":
            {
                var standard = secrets.Any(s => WebhookVerifier.VerifyStandard(s, request.Headers["webhook-id"], request.Headers["webhook-timestamp"],
                    request.Headers["webhook-signature"], request.Body, DateTimeOffset.UtcNow));
                var legacy = secrets.Any(s => WebhookVerifier.VerifyLegacy(s, request.Body, request.Headers["x-webhook-signature"]));
                return new Verdict(standard, null, legacy);
            }
            case "StandardWebhooks-nuget":
            {
                // StandardWebhooks 1.1.2 compares only the first of several space-separated v1 entries
                // (its loop re-reads the whole header for the last one), so each entry is given to it
                // alone; the spec accepts a request when any entry matches.
                foreach (var entry in request.Headers["webhook-signature"].Split(' '))
                foreach (var secret in secrets)
                {
                    var headers = new HeaderDictionary
                    {
                        ["webhook-id"] = request.Headers["webhook-id"],
                        ["webhook-timestamp"] = request.Headers["webhook-timestamp"],
                        ["webhook-signature"] = entry,
                    };
                    try
                    {
                        new StandardWebhook(secret).Verify(Encoding.UTF8.GetString(request.Body), headers);
                        return new Verdict(true, null, null);
                    }
                    catch (WebhookVerificationException)
                    {
                        // its messages are its own; only the outcome counts
                    }
                }
                return new Verdict(false, null, null);
            }
            default:
            {
                var url = await StartReceiverAsync(verifier, secrets);
                using var client = new HttpClient();
                var message = new HttpRequestMessage(HttpMethod.Post, url + "/webhooks") { Content = new ByteArrayContent(request.Body) };
                message.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(request.Headers["content-type"]);
                foreach (var name in new[] { "webhook-id", "webhook-timestamp", "webhook-signature", "x-webhook-signature", "x-webhook-event", "x-webhook-delivery" })
                    message.Headers.TryAddWithoutValidation(name, request.Headers[name]);
                var response = await client.SendAsync(message);
                var answer = (await response.Content.ReadFromJsonAsync<JsonNode>())!;
                Assert.That(response.StatusCode, Is.EqualTo(answer["ok"]!.GetValue<bool>() ? HttpStatusCode.OK : HttpStatusCode.Unauthorized));
                return new Verdict(answer["ok"]!.GetValue<bool>(), answer["reason"]?.GetValue<string>(), answer["x_webhook_signature"]?.GetValue<bool>());
            }
        }
    }

    private readonly Dictionary<string, string> _receivers = [];

    /// <summary>Starts (once per language and secrets) the example receiver on a free port; returns its base URL.</summary>
    private async Task<string> StartReceiverAsync(string language, string[] secrets)
    {
        var key = language + " " + string.Join(",", secrets);
        if (_receivers.TryGetValue(key, out var known)) return known;
        var (runtime, script) = language == "python"
            ? (Repo.Python, "docs/examples/python/verify_webhook.py")
            : ("node", "docs/examples/node/verify-webhook.js");
        var process = ChildProcess.Start(runtime, [Repo.Path(script)], Repo.Root,
            new Dictionary<string, string> { ["WEBHOOK_SECRET"] = string.Join(" ", secrets), ["PORT"] = "0" });
        _processes.Add(process);
        Assert.That(await process.WaitForOutputAsync("listening on ", TimeSpan.FromSeconds(30)), Is.True, process.Output);
        var url = process.Output.Split('\n').First(l => l.StartsWith("listening on ", StringComparison.Ordinal))["listening on ".Length..].Trim();
        return _receivers[key] = url;
    }
}
