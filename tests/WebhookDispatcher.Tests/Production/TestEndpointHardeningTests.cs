using System.Net;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Production;

/// <summary>
/// <c>POST /api/webhooks/{id}/test</c> as deployed: no oracle for internal names, and a per-user
/// rate limit. Host names resolve through <see cref="StubNetwork"/>; the SSRF guard is the
/// production code.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class TestEndpointHardeningTests
{
    [Test]
    public async Task A_private_address_and_a_name_that_does_not_resolve_get_the_same_generic_answer()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var port = new Uri(receiver.Url).Port;
        var internalName = ProductionSetup.NewHost("db-internal");
        var missingName = ProductionSetup.NewHost("no-such-host"); // never named: does not resolve
        var publicName = ProductionSetup.NewHost("public");
        ProductionSetup.Network.Name(internalName, IPAddress.Parse("10.20.30.40"));
        ProductionSetup.Network.Name(publicName, ProductionSetup.PublicV4);
        using var client = ProductionSetup.Workers.Client(Events.NewUser());
        var toInternal = await client.CreateAsync($"http://{internalName}:{port}/hook", ["email.received"]);
        var toMissing = await client.CreateAsync($"http://{missingName}:{port}/hook", ["email.received"]);
        var toPublic = await client.CreateAsync($"http://{publicName}:{port}/hook", ["email.received"]);

        var internalAnswer = await client.PostAsync($"/api/webhooks/{toInternal.Id()}/test", null);
        var missingAnswer = await client.PostAsync($"/api/webhooks/{toMissing.Id()}/test", null);
        var publicAnswer = await client.PostAsync($"/api/webhooks/{toPublic.Id()}/test", null);

        var internalBody = await internalAnswer.Content.ReadAsStringAsync();
        var missingBody = await missingAnswer.Content.ReadAsStringAsync();
        var internalJson = await internalAnswer.JsonAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(internalAnswer.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(missingAnswer.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(missingBody, Is.EqualTo(internalBody), "byte for byte the same answer");
            Assert.That(internalJson["success"]!.GetValue<bool>(), Is.False);
            Assert.That(internalJson["status_code"], Is.Null);
            Assert.That(internalJson["response_time_ms"]!.GetValue<long>(), Is.Zero, "no timing to tell the two apart");
            Assert.That(internalJson["error"]!.GetValue<string>(), Is.EqualTo(SubscriptionsApi.TestUnreachableMessage));
            Assert.That(internalBody, Does.Not.Contain("10.20.30.40").And.Not.Contain("db-internal").And.Not.Contain("private")
                .And.Not.Contain("resolve"));
            // The positive control: the same instance reaches a public address and says so.
            Assert.That((await publicAnswer.JsonAsync())["success"]!.GetValue<bool>(), Is.True);
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "only the public test was sent");
        });
    }

    [Test]
    public async Task Past_ten_test_sends_a_minute_a_user_gets_429_with_Retry_After_and_may_send_again_after_it()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        using var client = TestTokens.Client(Events.NewUser());
        using var other = TestTokens.Client(Events.NewUser());
        var first = await client.CreateAsync(receiver.Url + "/a", ["email.received"]);
        var second = await client.CreateAsync(receiver.Url + "/b", ["email.received"]);
        var others = await other.CreateAsync(receiver.Url + "/c", ["email.received"]);

        var allowed = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++)
            allowed.Add((await client.PostAsync($"/api/webhooks/{(i % 2 == 0 ? first : second).Id()}/test", null)).StatusCode);
        // The limit is the user's, over all their subscriptions.
        var limited = await client.PostAsync($"/api/webhooks/{second.Id()}/test", null);
        var otherUser = await other.PostAsync($"/api/webhooks/{others.Id()}/test", null);
        var retryAfter = limited.Headers.RetryAfter?.Delta;
        var problem = await limited.JsonAsync();
        var sentBeforeWait = receiver.Requests.Count;
        if (retryAfter is { } wait) await Task.Delay(wait + TimeSpan.FromMilliseconds(200));
        var afterWait = await client.PostAsync($"/api/webhooks/{first.Id()}/test", null);

        Assert.Multiple(() =>
        {
            Assert.That(allowed, Has.All.EqualTo(HttpStatusCode.OK));
            Assert.That(limited.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(limited.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That(problem["status"]!.GetValue<int>(), Is.EqualTo(429));
            Assert.That(problem["title"]!.GetValue<string>(), Is.Not.Empty);
            Assert.That(retryAfter, Is.Not.Null, "Retry-After in seconds");
            Assert.That(retryAfter, Is.InRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(6)), "one send more every 6 s");
            Assert.That(otherUser.StatusCode, Is.EqualTo(HttpStatusCode.OK), "another user is not limited");
            Assert.That(sentBeforeWait, Is.EqualTo(11), "the refused send went nowhere");
            Assert.That(afterWait.StatusCode, Is.EqualTo(HttpStatusCode.OK), "Retry-After was long enough");
        });
    }

    [Test]
    public async Task The_test_rate_limit_follows_the_setting()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Dispatcher:Workers"] = "false",
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Subscriptions:TestRequestsPerMinute"] = "2",
        });
        using var client = api.Client(Events.NewUser());
        var created = await client.CreateAsync(receiver.Url + "/a", ["email.received"]);

        var answers = new List<HttpResponseMessage>();
        for (var i = 0; i < 3; i++) answers.Add(await client.PostAsync($"/api/webhooks/{created.Id()}/test", null));

        Assert.Multiple(() =>
        {
            Assert.That(answers.Select(a => a.StatusCode),
                Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
            Assert.That(answers[2].Headers.RetryAfter?.Delta, Is.InRange(TimeSpan.FromSeconds(25), TimeSpan.FromSeconds(30)),
                "2 a minute: one more every 30 s");
        });
    }
}
