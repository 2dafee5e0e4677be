using System.Net;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Delivery;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Production;

/// <summary>
/// SSRF protection as deployed: an instance with <c>Delivery:AllowPrivateNetworks=false</c>,
/// driven over HTTP and through real deliveries. Host names resolve through
/// <see cref="StubNetwork"/>; the guard's filtering is the production code.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class SsrfTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static readonly string[] PrivateUrls =
    [
        "http://10.0.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://api.localhost/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:192.168.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://172.16.5.4/hook",
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://0177.0.0.1/hook",
        "http://127.1/hook",
        "http://\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF11/hook", // fullwidth digits
        "http://\u246B\u2466.0.0.1:8080/hook",                     // circled numbers
        "http://[2001:2::1]/hook",                                   // benchmarking
        "http://[3fff::1]/hook",                                     // documentation (RFC 9637)
    ];

    [TestCaseSource(nameof(PrivateUrls))]
    public async Task A_private_or_local_url_answers_400_on_create_and_nothing_is_stored(string url)
    {
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);

        var response = await client.PostJsonAsync("/api/webhooks", Body(url));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        var problem = await response.JsonAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(problem.ErrorFields(), Is.EqualTo(new[] { "url" }));
            Assert.That(problem["errors"]!["url"]![0]!.GetValue<string>(), Does.Contain("private"));
            Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.Zero);
        });
    }

    [Test]
    public async Task A_private_url_answers_400_on_update_and_the_stored_url_is_unchanged()
    {
        using var client = ProductionSetup.Workers.Client(Events.NewUser());
        var created = await client.CreateAsync("http://hooks.example.com/h", ["task.created"]);

        var response = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", """{"url":"http://192.168.1.20/h"}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == created.Id()));
        Assert.That(stored.Url, Is.EqualTo("http://hooks.example.com/h"));
    }

    [Test]
    public async Task A_public_url_and_a_host_name_are_accepted_by_the_same_instance()
    {
        using var client = ProductionSetup.Workers.Client(Events.NewUser());

        var literal = await client.PostJsonAsync("/api/webhooks", Body("http://93.184.215.14/hook"));
        var name = await client.PostJsonAsync("/api/webhooks", Body("http://hooks.example.com/hook"));

        Assert.That(literal.StatusCode, Is.EqualTo(HttpStatusCode.Created), await literal.Content.ReadAsStringAsync());
        Assert.That(name.StatusCode, Is.EqualTo(HttpStatusCode.Created), await name.Content.ReadAsStringAsync());
    }

    [TestCase("http://hooks.example.com/hook", HttpStatusCode.BadRequest)]
    [TestCase("https://10.0.0.1/hook", HttpStatusCode.BadRequest)]
    [TestCase("https://localhost/hook", HttpStatusCode.BadRequest)]
    [TestCase("https://hooks.example.com/hook", HttpStatusCode.Created)]
    public async Task With_RequireHttps_only_public_https_urls_are_accepted(string url, HttpStatusCode expected)
    {
        var user = Events.NewUser();
        using var client = ProductionSetup.HttpsOnly.Client(user);

        var response = await client.PostJsonAsync("/api/webhooks", Body(url));

        Assert.That(response.StatusCode, Is.EqualTo(expected), await response.Content.ReadAsStringAsync());
        if (expected == HttpStatusCode.BadRequest)
            Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "url" }));
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)),
            Is.EqualTo(expected == HttpStatusCode.Created ? 1 : 0));
    }

    [Test]
    public async Task A_name_that_resolves_only_to_loopback_is_accepted_but_its_delivery_attempt_is_recorded_as_blocked()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var port = new Uri(receiver.Url).Port;
        var host = ProductionSetup.NewHost("loopback-only");
        ProductionSetup.Network.Name(host, IPAddress.Loopback, IPAddress.IPv6Loopback);
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);
        var created = await client.CreateAsync($"http://{host}:{port}/hook", ["email.received"], retryCount: 0);

        await ProductionSetup.Workers.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Failed, Patience), Is.True);
        var attempt = (await Dispatcher.DeliveriesAsync(created.Id())).Single().Attempts.Single();
        var shown = await ShownDeliveryAsync(client, created.Id());
        var shownAttempt = shown["attempts"]!.AsArray().Single()!;
        Assert.Multiple(() =>
        {
            Assert.That(attempt.Outcome, Is.EqualTo(AttemptOutcome.BlockedAddress));
            Assert.That(attempt.StatusCode, Is.Null);
            Assert.That(attempt.ErrorMessage, Does.Contain(host).And.Contain("non-public"));
            Assert.That(shown["status"]!.GetValue<string>(), Is.EqualTo("failed"));
            Assert.That(shownAttempt["outcome"]!.GetValue<string>(), Is.EqualTo("blocked_address"));
            Assert.That(shownAttempt["status_code"], Is.Null);
            // The attempt is recorded only after the connect decision, so nothing can still be on its way.
            Assert.That(receiver.Requests, Is.Empty);
            Assert.That(ProductionSetup.Network.Dials.Where(d => d.Port == port), Is.Empty, "nothing was dialled");
        });
    }

    [TestCase("http://127.0.0.1:{0}/hook")]
    [TestCase("http://[::ffff:127.0.0.1]:{0}/hook")]
    [TestCase("http://2130706433:{0}/hook")]
    public async Task A_literal_loopback_url_stored_before_the_rule_is_blocked_at_delivery(string template)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var port = new Uri(receiver.Url).Port;
        var user = Events.NewUser();
        // The API refuses these URLs; a row from before the rule (or written by hand) must still not be reached.
        var subscription = await Dispatcher.SubscribeAsync(user, string.Format(template, port), ["email.received"], retryCount: 0);

        await ProductionSetup.Workers.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        var attempt = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Attempts.Single();
        Assert.Multiple(() =>
        {
            Assert.That(attempt.Outcome, Is.EqualTo(AttemptOutcome.BlockedAddress));
            Assert.That(receiver.Requests, Is.Empty);
        });
    }

    [Test]
    public async Task A_name_with_public_and_private_addresses_is_dialled_only_on_the_public_one()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var port = new Uri(receiver.Url).Port;
        var host = ProductionSetup.NewHost("mixed");
        // Private ones first, and 127.0.0.1 is where the receiver really listens: a guard that let any
        // of them through would dial it, and the dial record would show it.
        ProductionSetup.Network.Name(host, IPAddress.Parse("10.0.0.7"), IPAddress.Loopback, IPAddress.Parse("169.254.169.254"),
            IPAddress.Parse("fd00::7"), ProductionSetup.PublicV4, IPAddress.Parse("192.168.1.1"));
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);
        var created = await client.CreateAsync($"http://{host}:{port}/hook", ["email.received"], retryCount: 0);
        var secret = created["secret"]!.GetValue<string>();

        await ProductionSetup.Workers.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, Patience), Is.True);
        var dials = ProductionSetup.Network.Dials.Where(d => d.Port == port).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(dials, Is.Not.Empty);
            Assert.That(dials.Select(d => d.Allowed), Has.All.EqualTo(new[] { ProductionSetup.PublicV4 }));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
            Assert.That(receiver.Requests[0].Headers["host"], Is.EqualTo($"{host}:{port}"));
            Assert.That(Signatures.StandardVerifies(receiver.Requests[0], secret), Is.True);
        });
    }

    [Test]
    public async Task The_test_endpoint_obeys_the_same_guard()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var port = new Uri(receiver.Url).Port;
        var blocked = ProductionSetup.NewHost("test-loopback");
        var mixed = ProductionSetup.NewHost("test-mixed");
        ProductionSetup.Network.Name(blocked, IPAddress.Loopback);
        ProductionSetup.Network.Name(mixed, IPAddress.Loopback, ProductionSetup.PublicV6);
        using var client = ProductionSetup.Workers.Client(Events.NewUser());
        var toBlocked = await client.CreateAsync($"http://{blocked}:{port}/hook", ["email.received"]);
        var toMixed = await client.CreateAsync($"http://{mixed}:{port}/hook", ["email.received"]);

        var refused = await (await client.PostAsync($"/api/webhooks/{toBlocked.Id()}/test", null)).JsonAsync();
        var sent = await (await client.PostAsync($"/api/webhooks/{toMixed.Id()}/test", null)).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(refused["success"]!.GetValue<bool>(), Is.False);
            Assert.That(refused["error"]!.GetValue<string>(), Is.EqualTo(SubscriptionsApi.TestUnreachableMessage), "the reason is not told");
            Assert.That(sent["success"]!.GetValue<bool>(), Is.True, sent.ToJsonString());
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "only the test through the public address arrived");
            Assert.That(ProductionSetup.Network.Dials.Where(d => d.Port == port).Select(d => d.Allowed),
                Has.All.EqualTo(new[] { ProductionSetup.PublicV6 }));
        });
    }

    private static string Body(string url) => new JsonObject { ["url"] = url, ["event_types"] = new JsonArray("email.received") }.ToJsonString();

    private static async Task<JsonNode> ShownDeliveryAsync(HttpClient client, Guid subscriptionId) =>
        (await (await client.GetAsync($"/api/webhooks/{subscriptionId}/deliveries?include_attempts=true")).JsonAsync())["data"]!.AsArray().Single()!;
}
