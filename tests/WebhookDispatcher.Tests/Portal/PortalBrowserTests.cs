using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Npgsql;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>
/// The delivery portal in a real browser (Debian's Chromium through Playwright) against a
/// dispatcher on real Kestrel, PostgreSQL and RabbitMQ. Every wait is on something the page or
/// the database shows, with generous timeouts, never on the clock. The screenshots in
/// docs/portal.md are taken here.
/// </summary>
[NonParallelizable]
public sealed class PortalBrowserTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);
    private PortalHarness _portal = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _portal = await PortalHarness.StartAsync();
        await Chromium.BrowserAsync();
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await Chromium.CloseAsync();
        await _portal.DisposeAsync();
    }

    [SetUp]
    public void ReceiverWorks() => _portal.ReceiverFails = false;

    [Test]
    public async Task A_user_creates_an_endpoint_tests_it_sees_a_failing_delivery_fixes_it_retries_and_rotates_the_secret()
    {
        var user = Events.NewUser();
        var link = await _portal.LinkAsync(user);
        var token = PortalHarness.TokenOf(link);
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        var seenBefore = _portal.Requests.Requests.Count;

        await page.GotoAsync(link);
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        Assert.That(page.Url, Does.Not.Contain("token").And.Not.Contain(token), "the token is gone from the address bar after load");

        // Create an endpoint pointing at the local receiver.
        await page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" }).ClickAsync();
        await page.GetByLabel("URL").FillAsync(_portal.ReceiverUrl("/flow"));
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "email.received" }).CheckAsync();
        await page.GetByLabel("Description (optional)").FillAsync("Notely → CRM sync");
        await page.GetByLabel("Retries").FillAsync("1");
        await PortalHarness.ScreenshotAsync(page, "create-endpoint");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create endpoint" }).ClickAsync();
        var secret = page.GetByTestId("secret");
        await Expect(secret).ToContainTextAsync("whsec_");
        var firstSecret = await secret.TextContentAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();
        await Expect(page.GetByTestId("secret")).ToHaveCountAsync(0);

        // Send a test event and see the answer.
        await page.GetByRole(AriaRole.Button, new() { Name = "Send test event" }).ClickAsync();
        await Expect(page.GetByTestId("test-result")).ToContainTextAsync("Test delivered: HTTP 200");
        Assert.That(_portal.Receiver.To("/flow"), Has.Count.EqualTo(1), "the test reached the receiver");

        // An event that fails twice: both attempts and their causes are shown.
        _portal.ReceiverFails = true;
        var evt = Events.EmailReceived(user);
        await _portal.Dispatcher.PublishAsync(evt);
        var row = await WaitForStatusAsync(page, evt.EventId, "failed");
        await row.GetByRole(AriaRole.Button, new() { Name = "Show attempts" }).ClickAsync();
        var details = page.Locator($"#d-{await row.GetAttributeAsync("data-delivery")}");
        var attempts = details.Locator("table.attempts tbody tr");
        await Expect(attempts).ToHaveCountAsync(2);
        await Expect(attempts.Nth(0)).ToContainTextAsync("The endpoint answered HTTP 500");
        await Expect(attempts.Nth(1)).ToContainTextAsync("receiver is down for maintenance");
        await details.Locator("details.payload summary").ClickAsync();
        await Expect(details.GetByTestId("payload")).ToContainTextAsync(evt.EmailId);
        // The headers shown are those the receiver got, attempt by attempt, never a signature.
        var deliveryId = await row.GetAttributeAsync("data-delivery");
        var sent = _portal.Receiver.To("/flow").Where(r => r.Headers.GetValueOrDefault("x-webhook-delivery") == deliveryId).ToList();
        Assert.That(sent, Has.Count.EqualTo(2));
        await details.GetByText("Request headers sent").ClickAsync();
        var headers = details.Locator("details.headers:not(.payload) pre");
        await Expect(headers).ToContainTextAsync($"X-Webhook-Delivery: {deliveryId}");
        for (var n = 1; n <= sent.Count; n++)
            await Expect(headers).ToContainTextAsync($"webhook-timestamp: {sent[n - 1].Headers["webhook-timestamp"]} (attempt {n})");
        Assert.That(await headers.TextContentAsync(), Does.Not.Contain(sent[0].Headers["webhook-signature"].Split(',')[1])
            .And.Not.Contain(sent[0].Headers["x-webhook-signature"]));
        await PortalHarness.ScreenshotAsync(page, "delivery-log");

        // Fix the receiver, retry, and see it succeed (the log refreshes itself while a delivery is under way).
        _portal.ReceiverFails = false;
        await row.GetByRole(AriaRole.Button, new() { Name = "Retry" }).ClickAsync();
        await WaitForStatusAsync(page, evt.EventId, "success");
        var retried = page.Locator($"tr[data-event='{evt.EventId}']");
        await Expect(page.Locator($"#d-{await retried.GetAttributeAsync("data-delivery")} table.attempts tbody tr")).ToHaveCountAsync(3);

        // Rotate the secret: the new one is shown once.
        await page.GetByRole(AriaRole.Button, new() { Name = "Rotate secret" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Rotate" }).ClickAsync();
        await Expect(page.GetByTestId("secret")).ToContainTextAsync("whsec_");
        var rotated = await page.GetByTestId("secret").TextContentAsync();
        Assert.That(rotated, Is.Not.EqualTo(firstSecret));
        await PortalHarness.ScreenshotAsync(page, "endpoint");
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();
        Assert.That(await page.ContentAsync(), Does.Not.Contain(rotated!).And.Not.Contain(firstSecret!), "a secret is shown once, then gone from the page");

        // The list, the catalog and the statistics.
        await page.GetByRole(AriaRole.Button, new() { Name = "← All endpoints" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Row).Filter(new() { HasText = "/flow" })).ToContainTextAsync("Active");
        await PortalHarness.ScreenshotAsync(page, "endpoints");
        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Event catalog" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "task.completed" })).ToBeVisibleAsync();
        await PortalHarness.ScreenshotAsync(page, "catalog");
        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Statistics" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Img, new() { Name = "Succeeded: 1, Failed: 0" })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Img, new() { Name = "1 succeeded, 0 failed" })).ToBeVisibleAsync();
        await PortalHarness.ScreenshotAsync(page, "statistics");

        // The token never left the page: not in a request's URL or Referer, not in the server's logs.
        var requests = _portal.Requests.Requests.Skip(seenBefore).ToList();
        Assert.That(requests.Select(r => r.Target), Has.Some.StartsWith("/portal/assets/").And.Some.StartsWith("/api/webhooks/"),
            "the server saw the page's requests, so the checks below could fail");
        Assert.Multiple(() =>
        {
            Assert.That(requests.Where(r => r.Target.Contains(token)).Select(r => r.Target), Is.Empty, "no request URL carries the token");
            Assert.That(requests.Where(r => r.Referer is not null).Select(r => r.Referer), Is.Empty, "no request carries a Referer at all");
            Assert.That(_portal.Logs.Lines.Where(l => l.Contains(token)), Is.Empty, "the server never logged the token");
            Assert.That(_portal.Logs.Lines.Any(l => l.Contains("/portal/session")), Is.True, "request lines were logged, so the check above could fail");
        });
    }

    [Test]
    public async Task A_user_sets_a_filter_and_a_template_sees_a_bad_part_named_previews_the_body_and_saves_them()
    {
        var user = Events.NewUser();
        var link = await _portal.LinkAsync(user);
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(link);
        await page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" }).ClickAsync();
        await page.GetByLabel("URL").FillAsync(_portal.ReceiverUrl("/shaped"));
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "email.received" }).CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Create endpoint" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Edit" }).ClickAsync();

        // A bad part of the filter is named under its field; nothing is saved.
        await page.GetByLabel("Filter (optional, JSON)").FillAsync("""{"$or": [{"data.from": {"$gt": "soon"}}]}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.Locator("#f-filter-error")).ToContainTextAsync("filter.$or[0].data.from.$gt: Expects a number or an RFC 3339 timestamp");

        // Preview renders the example with the form's template before anything is saved.
        await page.GetByLabel("Filter (optional, JSON)").FillAsync("""{"data.to[]": {"$contains": "@example.com"}}""");
        await page.GetByLabel("Template (optional, JSON)").FillAsync("""{"builtin": "slack"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Preview" }).ClickAsync();
        await Expect(page.GetByTestId("preview")).ToContainTextAsync("email.received example: the filter selects it");
        await Expect(page.GetByTestId("preview")).ToContainTextAsync("Content-Type: application/json");
        await Expect(page.GetByTestId("preview-body")).ToContainTextAsync("{\"text\": \"*email.received* at ");
        await PortalHarness.ScreenshotAsync(page, "filter-template");

        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.GetByTestId("filter")).ToContainTextAsync("\"data.to[]\"");
        await Expect(page.GetByTestId("template")).ToHaveTextAsync("slack");
        using var client = _portal.Client(user);
        var stored = (await (await client.GetAsync("/api/webhooks")).JsonAsync())["data"]![0]!;
        Assert.Multiple(() =>
        {
            Assert.That(stored["filter"]!.ToJsonString(), Is.EqualTo("""{"data.to[]":{"$contains":"@example.com"}}"""));
            Assert.That(stored["template"]!.ToJsonString(), Is.EqualTo("""{"builtin":"slack"}"""));
        });
    }

    [Test]
    public async Task A_user_sets_custom_headers_and_the_ed25519_scheme_sees_credentials_masked_and_an_unchanged_edit_keeps_them()
    {
        const string credential = "Bearer portal-credential-000000001";
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user));

        await page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" }).ClickAsync();
        await page.GetByLabel("URL").FillAsync(_portal.ReceiverUrl("/options"));
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "email.received" }).CheckAsync();
        await page.GetByLabel("Custom headers (optional)").FillAsync($"Authorization: {credential}\nX-Tenant: acme");
        await page.GetByLabel("Signatures").SelectOptionAsync("both");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create endpoint" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();

        await Expect(page.GetByTestId("headers")).ToContainTextAsync("Authorization: Bear…(redacted)");
        await Expect(page.GetByTestId("headers")).ToContainTextAsync("X-Tenant: acme");
        await Expect(page.GetByTestId("signature-scheme")).ToContainTextAsync("Ed25519 (v1a)");
        await Expect(page.GetByTestId("public-key")).ToContainTextAsync("whpk_");
        await PortalHarness.ScreenshotAsync(page, "endpoint-options");
        // Edit and save without touching the headers: the masked value goes back and keeps the credential.
        await page.GetByRole(AriaRole.Button, new() { Name = "Edit" }).ClickAsync();
        await Expect(page.GetByLabel("Custom headers (optional)")).ToHaveValueAsync("Authorization: Bear…(redacted)\nX-Tenant: acme");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Send test event" }).ClickAsync();
        await Expect(page.GetByTestId("test-result")).ToContainTextAsync("Test delivered");

        var sent = _portal.Receiver.To("/options").Single();

        // A delivery's log shows the endpoint's own headers as the API does: the credential masked.
        var evt = Events.EmailReceived(user);
        await _portal.Dispatcher.PublishAsync(evt);
        var row = await WaitForStatusAsync(page, evt.EventId, "success");
        await row.GetByRole(AriaRole.Button, new() { Name = "Show attempts" }).ClickAsync();
        var details = page.Locator($"#d-{await row.GetAttributeAsync("data-delivery")}");
        await details.GetByText("Request headers sent").ClickAsync();
        var shownHeaders = details.Locator("details.headers:not(.payload) pre");
        await Expect(shownHeaders).ToContainTextAsync("X-Tenant: acme");
        await Expect(shownHeaders).ToContainTextAsync("Authorization: Bear…(redacted)");
        await Expect(shownHeaders).ToContainTextAsync("v1 with your secret and v1a with the private key");
        Assert.Multiple(async () =>
        {
            Assert.That(sent.Headers["authorization"], Is.EqualTo(credential));
            Assert.That(sent.Headers["x-tenant"], Is.EqualTo("acme"));
            Assert.That(sent.Headers["webhook-signature"], Does.Contain("v1,").And.Contain("v1a,"));
            Assert.That(await page.ContentAsync(), Does.Not.Contain("portal-credential"), "the credential is never on the page");
        });
    }

    [Test]
    public async Task A_user_orders_an_endpoint_per_key_and_the_log_shows_each_deliverys_key()
    {
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user));

        await page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" }).ClickAsync();
        await page.GetByLabel("URL").FillAsync(_portal.ReceiverUrl("/ordered"));
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "task.updated" }).CheckAsync();
        await page.GetByLabel("Ordering").SelectOptionAsync("per_key");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create endpoint" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();
        await Expect(page.GetByTestId("ordering")).ToContainTextAsync("per key");

        var evt = Delivery.OrderingTests.TaskUpdated(user, "task-portal", 0);
        await _portal.Dispatcher.PublishAsync(evt);
        var row = await WaitForStatusAsync(page, evt.EventId, "success");
        await Expect(row.GetByTestId("ordering-key")).ToHaveTextAsync("key task_id:task-portal");
        using var client = _portal.Client(user);
        var stored = (await (await client.GetAsync("/api/webhooks")).JsonAsync())["data"]![0]!;
        Assert.That(stored["ordering"]!.GetValue<string>(), Is.EqualTo("per_key"));
    }

    [Test]
    public async Task A_user_batches_an_endpoint_sees_its_limits_and_turns_batching_off_again()
    {
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user));

        await page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" }).ClickAsync();
        await page.GetByLabel("URL").FillAsync(_portal.ReceiverUrl("/batching-form"));
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "email.received" }).CheckAsync();
        await page.GetByLabel("Batch: max events (optional)").FillAsync("3");
        await page.GetByLabel("Batch: max wait (ms)").FillAsync("10000");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create endpoint" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved it" }).ClickAsync();
        await Expect(page.GetByTestId("batch")).ToContainTextAsync("up to 3 events a POST, sent 10000 ms after the first at the latest, bodies up to 262144 bytes");

        var events = Enumerable.Range(0, 3).Select(_ => Events.EmailReceived(user)).ToList();
        foreach (var e in events) await _portal.Dispatcher.PublishAsync(e);
        Assert.That(await _portal.Receiver.WaitForAsync(1, Long, "/batching-form"), Is.True);
        var body = System.Text.Json.JsonDocument.Parse(_portal.Receiver.To("/batching-form").Single().Body).RootElement;
        Assert.That(body.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("id").GetGuid()), Is.EquivalentTo(events.Select(e => e.EventId)),
            "the three events in one POST");

        // The form shows the stored limits; a bad one is refused naming its field; emptying max events turns batching off.
        await page.GetByRole(AriaRole.Button, new() { Name = "Edit" }).ClickAsync();
        await Expect(page.GetByLabel("Batch: max events (optional)")).ToHaveValueAsync("3");
        await Expect(page.GetByLabel("Batch: max bytes")).ToHaveValueAsync("262144");
        await page.GetByLabel("Batch: max bytes").FillAsync("100");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.Locator("#f-batch-bytes-error")).ToContainTextAsync("batch.max_bytes");
        await page.GetByLabel("Batch: max events (optional)").FillAsync("");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.GetByTestId("batch")).ToHaveTextAsync("off: one POST per event");
        using var client = _portal.Client(user);
        var stored = (await (await client.GetAsync("/api/webhooks")).JsonAsync())["data"]![0]!;
        Assert.That(stored["batch"], Is.Null);
    }

    [Test]
    public async Task An_expired_a_used_and_a_tampered_link_are_refused()
    {
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();

        var used = await _portal.LinkAsync(user);
        var first = await context.NewPageAsync();
        await first.GotoAsync(used);
        await Expect(first.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        await AssertRefusedAsync(context, used);

        var tampered = await _portal.LinkAsync(user);
        var flipped = tampered[^1] == 'A' ? 'B' : 'A';
        await AssertRefusedAsync(context, tampered[..^1] + flipped);
        // The tampered copy did not spend the real one.
        var real = await context.NewPageAsync();
        await real.GotoAsync(tampered);
        await Expect(real.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();

        var expired = await _portal.LinkAsync(user, expiresInSeconds: 60);
        await using (var db = await OpenDatabaseAsync())
        await using (var command = new NpgsqlCommand(
            "UPDATE webhook_portal_sessions SET link_expires_at = now() - interval '1 second' WHERE created_by = $1 AND used_at IS NULL", db))
        {
            command.Parameters.Add(new() { Value = user });
            Assert.That(await command.ExecuteNonQueryAsync(), Is.EqualTo(1));
        }
        var page = await AssertRefusedAsync(context, expired);
        await PortalHarness.ScreenshotAsync(page, "link-refused");
    }

    [Test]
    public async Task A_read_only_session_shows_no_buttons_that_change_anything_and_the_server_refuses_every_change()
    {
        var user = Events.NewUser();
        var subscription = await _portal.SubscribeAsync(user, "/read-only", retryCount: 0);
        _portal.ReceiverFails = true;
        var evt = Events.EmailReceived(user);
        await _portal.Dispatcher.PublishAsync(evt);

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user, readOnly: true));
        await Expect(page.GetByText("Read-only", new() { Exact = true })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = subscription["url"]!.GetValue<string>() })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Add endpoint" })).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Sign out" })).ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = subscription["url"]!.GetValue<string>() }).ClickAsync();
        var row = await WaitForStatusAsync(page, evt.EventId, "failed");
        await PortalHarness.ScreenshotAsync(page, "read-only");
        await Expect(page.GetByText("null", new() { Exact = true })).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Show attempts" })).ToBeVisibleAsync();
        foreach (var name in new[] { "Send test event", "Edit", "Disable", "Rotate secret", "Delete", "Retry", "Recover" })
            await Expect(page.GetByRole(AriaRole.Button, new() { Name = name, Exact = true })).ToHaveCountAsync(0);
        await Expect(row).ToBeVisibleAsync();

        var (client, _) = await _portal.SessionAsync(await _portal.LinkAsync(user, readOnly: true));
        using (client)
        {
            var id = subscription.Id();
            var deliveryId = await row.GetAttributeAsync("data-delivery");
            var refused = new[]
            {
                await client.PostJsonAsync("/api/webhooks", $$"""{"url": "{{_portal.ReceiverUrl("/x")}}", "event_types": ["email.received"]}"""),
                await client.PatchJsonAsync($"/api/webhooks/{id}", """{"is_active": false}"""),
                await client.DeleteAsync($"/api/webhooks/{id}"),
                await client.PostAsync($"/api/webhooks/{id}/test", null),
                await client.PostAsync($"/api/webhooks/{id}/rotate-secret", null),
                await client.PostAsync($"/api/webhooks/{id}/deliveries/{deliveryId}/retry", null),
                await client.PostJsonAsync($"/api/webhooks/{id}/recover", """{"since": "2020-01-01T00:00:00Z"}"""),
                await client.PostJsonAsync("/api/webhooks/portal-sessions", "{}"),
            };
            Assert.That(refused.Select(r => (int)r.StatusCode), Is.All.EqualTo(403));
            Assert.That((await client.GetAsync($"/api/webhooks/{id}")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "it can still look");
        }
        using var owner = _portal.Client(user);
        var after = await (await owner.GetAsync($"/api/webhooks/{subscription.Id()}")).JsonAsync();
        Assert.That(after["is_active"]!.GetValue<bool>(), Is.True, "nothing changed");
        Assert.That(_portal.Receiver.To("/read-only"), Has.Count.EqualTo(1), "no test and no retry was sent");
    }

    [Test]
    public async Task Another_users_endpoints_and_deliveries_are_never_visible_and_the_pages_work_with_the_keyboard()
    {
        var (alice, bob) = (Events.NewUser(), Events.NewUser());
        var bobs = await _portal.SubscribeAsync(bob, "/bob", retryCount: 0);
        var alices = await _portal.SubscribeAsync(alice, "/alice", retryCount: 0);
        var bobsEvent = Events.EmailReceived(bob);
        await _portal.Dispatcher.PublishAsync(bobsEvent);
        Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(bobsEvent.EventId) == "success", Long), Is.True);
        var bobsDelivery = await DeliveryOfAsync(bobsEvent.EventId);

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(alice));
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = _portal.ReceiverUrl("/alice") })).ToBeVisibleAsync();
        await Expect(page.GetByText("/bob")).ToHaveCountAsync(0);

        // With the keyboard alone: Tab to a control, Enter to use it.
        await FocusByTabAsync(page, "Event catalog");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Event catalog" })).ToBeFocusedAsync();
        await FocusByTabAsync(page, "Example payload");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator("details[open] pre").First).ToContainTextAsync("\"event_type\": \"email.received\"");

        var (client, _) = await _portal.SessionAsync(await _portal.LinkAsync(alice));
        using (client)
        {
            Assert.That((await client.GetAsync($"/api/webhooks/{bobs.Id()}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.GetAsync($"/api/webhooks/{bobs.Id()}/deliveries")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.PostAsync($"/api/webhooks/{bobs.Id()}/test", null)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.GetAsync($"/api/webhooks/{bobs.Id()}/deliveries/{bobsDelivery}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.GetAsync($"/api/webhooks/{alices.Id()}/deliveries/{bobsDelivery}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound),
                "bob's delivery under alice's own endpoint");
            Assert.That((await client.PostAsync($"/api/webhooks/{bobs.Id()}/deliveries/{bobsDelivery}/retry", null)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.PostAsync($"/api/webhooks/{alices.Id()}/deliveries/{bobsDelivery}/retry", null)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        }
        using var bobsOwn = _portal.Client(bob);
        Assert.That((await bobsOwn.GetAsync($"/api/webhooks/{bobs.Id()}/deliveries/{bobsDelivery}")).StatusCode, Is.EqualTo(HttpStatusCode.OK),
            "the same request as its owner works, so the 404s above are about whose it is");
    }

    [Test]
    public async Task Only_an_allowed_origin_can_embed_the_portal()
    {
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();

        _portal.AllowedEmbedder.FrameSource = await _portal.LinkAsync(user);
        var allowed = await context.NewPageAsync();
        await allowed.GotoAsync(_portal.AllowedEmbedder.Origin + "/");
        await Expect(allowed.FrameLocator("#portal").GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        await PortalHarness.ScreenshotAsync(allowed, "embedded");

        _portal.OtherEmbedder.FrameSource = await _portal.LinkAsync(user);
        var other = await context.NewPageAsync();
        var refusal = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        other.Console += (_, m) => { if (m.Text.Contains("frame-ancestors")) refusal.TrySetResult(m.Text); };
        await other.GotoAsync(_portal.OtherEmbedder.Origin + "/");
        var message = await refusal.Task.WaitAsync(Long);
        Assert.That(message, Does.Contain(_portal.AllowedEmbedder.Origin), "the browser refused the frame by the portal's CSP");
        await Expect(other.FrameLocator("#portal").GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToHaveCountAsync(0);
    }

    [Test]
    public async Task An_operator_is_offered_no_retry_for_an_event_sent_in_a_batch()
    {
        var user = Events.NewUser();
        await SubscribeBatchedAsync(user, "/operator-batch", maxEvents: 2, maxWaitMs: 0);
        _portal.ReceiverFails = true;
        var events = new[] { Events.EmailReceived(user), Events.EmailReceived(user) };
        foreach (var e in events) await _portal.Dispatcher.PublishAsync(e);
        foreach (var e in events)
            Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(e.EventId) == "failed", Long), Is.True);
        _portal.ReceiverFails = false;

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.OperatorLinkAsync("ops-batch"));
        var found = await FindByEventIdAsync(page, events[0].EventId, user);
        await Expect(found).ToContainTextAsync("failed");
        await found.GetByRole(AriaRole.Button, new() { Name = "Open" }).ClickAsync();
        await Expect(page.GetByTestId("operator-status")).ToHaveTextAsync("failed");
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Retry delivery" })).ToHaveCountAsync(0);
    }

    [Test]
    public async Task An_operator_finds_a_failed_delivery_by_its_event_id_and_retries_it_recovers_another_and_a_user_session_cannot_reach_the_operator_view()
    {
        var user = Events.NewUser();
        await _portal.SubscribeAsync(user, "/operator", retryCount: 0);
        _portal.ReceiverFails = true;
        var evt = Events.EmailReceived(user);
        await _portal.Dispatcher.PublishAsync(evt);
        Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(evt.EventId) == "failed", Long), Is.True);
        _portal.ReceiverFails = false;

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.OperatorLinkAsync("ops-alice"));
        var found = await FindByEventIdAsync(page, evt.EventId, user);
        await Expect(found).ToContainTextAsync("failed");
        await PortalHarness.ScreenshotAsync(page, "operator-search");
        await found.GetByRole(AriaRole.Button, new() { Name = "Open" }).ClickAsync();
        await Expect(page.Locator("table.attempts tbody tr")).ToContainTextAsync("The endpoint answered HTTP 500");
        await page.Locator("details.payload summary").ClickAsync();
        await Expect(page.GetByTestId("payload")).ToContainTextAsync(evt.EmailId);
        await page.GetByRole(AriaRole.Button, new() { Name = "Retry delivery" }).ClickAsync();
        await Expect(page.GetByTestId("operator-status")).ToHaveTextAsync("success", new() { Timeout = (float)Long.TotalMilliseconds });
        await PortalHarness.ScreenshotAsync(page, "operator-delivery");
        Assert.That(_portal.Logs.Lines.Where(l => l.Contains("Operator ops-alice retried delivery") && l.Contains(user)), Is.Not.Empty,
            "the change is logged with the operator who made it");

        // Another failed delivery, recovered from the endpoint's page in the operator view.
        _portal.ReceiverFails = true;
        var second = Events.EmailReceived(user);
        await _portal.Dispatcher.PublishAsync(second);
        Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(second.EventId) == "failed", Long), Is.True);
        _portal.ReceiverFails = false;
        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Find endpoints" }).ClickAsync();
        await page.GetByLabel("Find by").SelectOptionAsync("user_id");
        await page.GetByLabel("Value").FillAsync(user);
        await page.GetByRole(AriaRole.Button, new() { Name = "Find", Exact = true }).ClickAsync();
        await page.Locator("tbody tr").Filter(new() { HasText = "/operator" }).GetByRole(AriaRole.Button, new() { Name = "Open" }).ClickAsync();
        await Expect(page.Locator($"tr[data-event='{second.EventId}']")).ToContainTextAsync("failed");
        await page.GetByLabel("Retry every failed delivery created after").FillAsync(
            DateTime.UtcNow.AddHours(-1).ToString("yyyy-MM-ddTHH:mm", System.Globalization.CultureInfo.InvariantCulture));
        await page.GetByRole(AriaRole.Button, new() { Name = "Recover" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("1 failed deliveries get a new round of attempts");
        await Expect(page.Locator($"tr[data-event='{second.EventId}']")).ToContainTextAsync("success", new() { Timeout = (float)Long.TotalMilliseconds });
        await PortalHarness.ScreenshotAsync(page, "operator-endpoint");
        Assert.That(_portal.Logs.Lines.Where(l => l.Contains("Operator ops-alice recovered the failed deliveries") && l.Contains("1 restarted")), Is.Not.Empty);

        // Both changes are in the audit log, newest first, with who made them and the answer.
        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Audit log" }).ClickAsync();
        await page.GetByLabel("User id").FillAsync(user);
        await page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true }).ClickAsync();
        var audit = page.Locator("table.audit tbody tr");
        await Expect(audit).ToHaveCountAsync(2);
        await Expect(audit.Nth(0)).ToContainTextAsync("Recovered failed deliveries");
        await Expect(audit.Nth(0)).ToContainTextAsync("1 restarted");
        await Expect(audit.Nth(1)).ToContainTextAsync("Retried a delivery");
        await Expect(audit.Nth(1)).ToContainTextAsync($"delivery {await DeliveryOfAsync(evt.EventId)}");
        await Expect(audit).ToContainTextAsync(["ops-alice", "ops-alice"]);
        await PortalHarness.ScreenshotAsync(page, "operator-audit");

        // A user's session (and a user's JWT) never reaches the operator view.
        var (client, _) = await _portal.SessionAsync(await _portal.LinkAsync(user));
        using (client)
        {
            Assert.That((await client.GetAsync($"/api/operator/deliveries?event_id={evt.EventId}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await client.PostAsync($"/api/operator/deliveries/{Guid.NewGuid()}/retry", null)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await client.GetAsync($"/api/operator/webhooks?user_id={user}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        }
        using var jwt = _portal.Client(user);
        Assert.That((await jwt.GetAsync($"/api/operator/deliveries?event_id={evt.EventId}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await jwt.PostAsJsonAsync("/api/operator/portal-sessions", new { })).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden),
            "a user's JWT cannot mint an operator link");
        var userPage = await context.NewPageAsync();
        await userPage.GotoAsync(await _portal.LinkAsync(user));
        await Expect(userPage.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        await Expect(userPage.GetByRole(AriaRole.Button, new() { Name = "Find deliveries" })).ToHaveCountAsync(0);
    }

    [Test]
    public async Task The_operators_endpoint_search_and_audit_log_load_older_pages_until_none_is_left()
    {
        var user = Events.NewUser();
        var first = await _portal.SubscribeAsync(user, "/older", retryCount: 0);
        var id = Guid.Parse(first["id"]!.GetValue<string>());
        // 50 more endpoints of the user, older than the first: copies of its row (the API allows 30 creations a minute).
        await using (var db = await OpenDatabaseAsync())
        await using (var command = new NpgsqlCommand("""
            INSERT INTO webhook_subscriptions
            SELECT (jsonb_populate_record(s, jsonb_build_object('id', gen_random_uuid(), 'url', s.url || '-' || g,
                                                               'created_at', s.created_at - g * interval '1 second'))).*
            FROM webhook_subscriptions s, generate_series(1, 50) g WHERE s.id = $1
            """, db))
        {
            command.Parameters.Add(new() { Value = id });
            Assert.That(await command.ExecuteNonQueryAsync(), Is.EqualTo(50));
        }
        // 101 recoveries of the first endpoint (nothing failed: each restarts 0), one audit entry each.
        var link = await _portal.OperatorLinkAsync("ops-paging");
        var (client, _) = await _portal.SessionAsync(link);
        using (client)
            for (var i = 0; i < 101; i++)
            {
                var response = await client.PostAsJsonAsync($"/api/operator/webhooks/{id}/recover", new { since = "2026-01-01T00:00:00Z" });
                Assert.That((int)response.StatusCode, Is.EqualTo(202), await response.Content.ReadAsStringAsync());
            }

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.OperatorLinkAsync("ops-paging"));
        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Find endpoints" }).ClickAsync();
        await page.GetByLabel("Find by").SelectOptionAsync("user_id");
        await page.GetByLabel("Value").FillAsync(user);
        await page.GetByRole(AriaRole.Button, new() { Name = "Find", Exact = true }).ClickAsync();
        var endpoints = page.Locator("tbody tr[data-webhook]");
        await Expect(endpoints).ToHaveCountAsync(50);
        await Expect(endpoints.First).ToContainTextAsync("/older");
        await page.GetByRole(AriaRole.Button, new() { Name = "Load older endpoints" }).ClickAsync();
        await Expect(endpoints).ToHaveCountAsync(51);
        await Expect(endpoints.Last).ToContainTextAsync("/older-50");
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Load older endpoints" })).ToHaveCountAsync(0);

        await page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button, new() { Name = "Audit log" }).ClickAsync();
        await page.GetByLabel("User id").FillAsync(user);
        await page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true }).ClickAsync();
        var audit = page.Locator("table.audit tbody tr");
        await Expect(audit).ToHaveCountAsync(100);
        await page.GetByRole(AriaRole.Button, new() { Name = "Load older changes" }).ClickAsync();
        await Expect(audit).ToHaveCountAsync(101);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Load older changes" })).ToHaveCountAsync(0);
        var ids = await audit.EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.audit)");
        Assert.That(ids.Distinct().Count(), Is.EqualTo(101), "no entry is shown twice across pages");
    }

    [Test]
    public async Task A_deliverys_payload_is_shown_whether_stored_in_its_row_or_once_per_event_and_the_page_says_so_when_it_is_gone()
    {
        var user = Events.NewUser();
        await _portal.SubscribeAsync(user, "/payloads", retryCount: 0);
        var small = Events.EmailReceived(user);
        var large = Events.EmailReceived(user) with
        {
            BodyPreview = string.Concat(Enumerable.Repeat("Minutes of the planning meeting, item by item. ", 250)) + "END-OF-PREVIEW",
        };
        await _portal.Dispatcher.PublishAsync(small);
        await _portal.Dispatcher.PublishAsync(large);
        foreach (var id in new[] { small.EventId, large.EventId })
            Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(id) == "success", Long), Is.True);
        Assert.That(await InlinePayloadLengthAsync(large.EventId), Is.Null, "the large payload is stored once per event, not in its delivery row");
        Assert.That(await InlinePayloadLengthAsync(small.EventId), Is.Not.Null, "the small one is in its row");

        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user));
        await page.GetByRole(AriaRole.Button, new() { Name = _portal.ReceiverUrl("/payloads") }).ClickAsync();
        foreach (var (evt, marker) in new[] { (small, small.BodyPreview), (large, "END-OF-PREVIEW") })
        {
            var details = await ShowAttemptsAsync(page, evt.EventId);
            var bytes = System.Text.Encoding.UTF8.GetByteCount(WebhookDispatcher.Payloads.WebhookPayload.Build(evt));
            await Expect(details.Locator("details.payload summary")).ToHaveTextAsync(
                $"Payload sent ({bytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} bytes)");
            await details.Locator("details.payload summary").ClickAsync();
            await Expect(details.GetByTestId("payload")).ToContainTextAsync(evt.EmailId);
            await Expect(details.GetByTestId("payload")).ToContainTextAsync(marker);
        }

        // The log's filters reach the API: a status neither has, a time before both, then a time after which both came.
        var apply = page.GetByRole(AriaRole.Button, new() { Name = "Apply" });
        var rows = page.Locator("tr[data-event]");
        await page.Locator("#flt-status").SelectOptionAsync("failed");
        await apply.ClickAsync();
        await Expect(page.GetByText("No deliveries match.")).ToBeVisibleAsync();
        await page.Locator("#flt-status").SelectOptionAsync("");
        await page.GetByLabel("Created before", new() { Exact = true }).FillAsync("2020-01-01T00:00");
        await apply.ClickAsync();
        await Expect(page.GetByText("No deliveries match.")).ToBeVisibleAsync();
        await page.GetByLabel("Created before", new() { Exact = true }).FillAsync("");
        await page.GetByLabel("Created after", new() { Exact = true }).FillAsync("2020-01-01T00:00");
        await apply.ClickAsync();
        await Expect(rows).ToHaveCountAsync(2);

        // The stored copy removed (retention or by hand): the page says so, and the rest still shows.
        await using (var db = await OpenDatabaseAsync())
        await using (var command = new NpgsqlCommand("DELETE FROM webhook_event_payloads WHERE event_id = $1", db))
        {
            command.Parameters.Add(new() { Value = large.EventId });
            Assert.That(await command.ExecuteNonQueryAsync(), Is.EqualTo(1));
        }
        var again = await context.NewPageAsync();
        await again.GotoAsync(await _portal.LinkAsync(user));
        await again.GetByRole(AriaRole.Button, new() { Name = _portal.ReceiverUrl("/payloads") }).ClickAsync();
        var gone = await ShowAttemptsAsync(again, large.EventId);
        await Expect(gone.GetByTestId("payload-gone")).ToContainTextAsync("no longer stored");
        await Expect(gone.Locator("table.attempts tbody tr")).ToHaveCountAsync(1);
        var kept = await ShowAttemptsAsync(again, small.EventId);
        await kept.Locator("details.payload summary").ClickAsync();
        await Expect(kept.GetByTestId("payload")).ToContainTextAsync(small.EmailId);
    }

    [Test]
    public async Task A_batched_endpoints_log_shows_which_batch_carries_each_event_and_how_many_events_a_batch_carries()
    {
        var user = Events.NewUser();
        await SubscribeBatchedAsync(user, "/batched", maxEvents: 2, maxWaitMs: 10000);
        var events = new[] { Events.EmailReceived(user), Events.EmailReceived(user) };
        // The first waits for company (10 s at most); the log shows it waiting, then follows it by itself.
        await _portal.Dispatcher.PublishAsync(events[0]);
        Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(events[0].EventId) == "batched", Long), Is.True);
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(await _portal.LinkAsync(user));
        await page.GetByRole(AriaRole.Button, new() { Name = _portal.ReceiverUrl("/batched") }).ClickAsync();
        await WaitForStatusAsync(page, events[0].EventId, "batched");
        await _portal.Dispatcher.PublishAsync(events[1]);
        // The row is there: WaitForStatusAsync only watches it, so "success" must come from the log's own refresh.
        await WaitForStatusAsync(page, events[0].EventId, "success");
        foreach (var e in events)
            Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(async () => await StatusOfAsync(e.EventId) == "success", Long), Is.True);
        Guid batchId;
        await using (var db = await OpenDatabaseAsync())
        await using (var command = new NpgsqlCommand("SELECT batch_id FROM webhook_deliveries WHERE event_id = $1", db))
        {
            command.Parameters.Add(new() { Value = events[0].EventId });
            batchId = (Guid)(await command.ExecuteScalarAsync())!;
        }

        // The batch is a delivery of its own (its event id is its id); each event names it.
        var batch = await WaitForStatusAsync(page, batchId, "success");
        await Expect(batch).ToContainTextAsync("batch of 2 events");
        foreach (var e in events)
        {
            var row = await WaitForStatusAsync(page, e.EventId, "success");
            await Expect(row).ToContainTextAsync($"in batch {batchId}");
        }
        await Expect(page.Locator("#flt-status option[value='batched']")).ToHaveCountAsync(1);
        await Expect(page.Locator("#flt-type option[value='batch']")).ToHaveCountAsync(1);
        var member = await ShowAttemptsAsync(page, events[0].EventId);
        await Expect(member).ToContainTextAsync($"This event is sent in batch {batchId}");
    }

    [Test]
    public async Task Signing_out_with_the_keyboard_ends_the_session_on_the_server_at_once_and_leaving_the_page_ends_it_too()
    {
        var user = Events.NewUser();
        await using var context = await Chromium.ContextAsync();
        var page = await context.NewPageAsync();
        var sessionToken = await OpenCapturingSessionAsync(page, await _portal.LinkAsync(user, readOnly: true));
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        using var bearer = _portal.Client(null);
        bearer.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", sessionToken);
        Assert.That((await bearer.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the page's session works before");

        await FocusByTabAsync(page, "Sign out");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "You have signed out" })).ToBeFocusedAsync();
        await Expect(page.GetByTestId("signed-out")).ToContainTextAsync("cannot be used again");
        Assert.That((await bearer.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "ended on the server at once");
        await Expect(page.GetByRole(AriaRole.Navigation).GetByRole(AriaRole.Button)).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Sign out" })).ToHaveCountAsync(0);

        // A new link opened in the same page changes only the fragment: it is traded all the same and leaves the address bar.
        var reopened = await OpenCapturingSessionAsync(page, await _portal.LinkAsync(user, readOnly: true));
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        Assert.That(page.Url, Does.Not.Contain("token"), "the new link's token is gone from the address bar");
        Assert.That(reopened, Is.Not.EqualTo(sessionToken));

        // Leaving the page (closing, reloading or navigating away) loses the token, and ends its session too.
        var second = await context.NewPageAsync();
        var secondToken = await OpenCapturingSessionAsync(second, await _portal.LinkAsync(user));
        await Expect(second.GetByRole(AriaRole.Heading, new() { Name = "Endpoints" })).ToBeVisibleAsync();
        using var secondBearer = _portal.Client(null);
        secondBearer.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", secondToken);
        Assert.That((await secondBearer.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await second.GotoAsync("about:blank");
        Assert.That(await Infrastructure.Dispatcher.EventuallyAsync(
            async () => (await secondBearer.GetAsync("/api/webhooks")).StatusCode == HttpStatusCode.Unauthorized, Long), Is.True);
        Assert.That(_portal.Logs.Lines.Where(l => l.Contains(sessionToken) || l.Contains(secondToken)), Is.Empty, "no session token in the server's logs");
    }

    /// <summary>Opens <paramref name="link"/> in <paramref name="page"/> and returns the session token the page got for it (from the answer it read).</summary>
    private static async Task<string> OpenCapturingSessionAsync(IPage page, string link)
    {
        var opened = page.WaitForResponseAsync(r => r.Request.Method == "POST" && new Uri(r.Url).AbsolutePath == "/portal/session");
        await page.GotoAsync(link);
        var body = await (await opened).JsonAsync();
        return body!.Value.GetProperty("session_token").GetString()!;
    }

    /// <summary>Waits for the event's delivery in the log and unfolds its attempts; returns the row that holds them.</summary>
    private static async Task<ILocator> ShowAttemptsAsync(IPage page, Guid eventId)
    {
        var row = await WaitForStatusAsync(page, eventId, "success");
        await row.GetByRole(AriaRole.Button, new() { Name = "Show attempts" }).ClickAsync();
        return page.Locator($"#d-{await row.GetAttributeAsync("data-delivery")}");
    }

    /// <summary>Presses Tab until the focused element's text is <paramref name="text"/> (at most 60 times).</summary>
    private static async Task FocusByTabAsync(IPage page, string text)
    {
        for (var i = 0; i < 60; i++)
        {
            await page.Keyboard.PressAsync("Tab");
            if (await page.EvaluateAsync<string>("document.activeElement?.textContent?.trim() ?? ''") == text) return;
        }
        Assert.Fail($"Tab never reached \"{text}\"");
    }

    private static async Task<IPage> AssertRefusedAsync(IBrowserContext context, string link)
    {
        var page = await context.NewPageAsync();
        await page.GotoAsync(link);
        await Expect(page.GetByTestId("link-refused")).ToContainTextAsync("expired, has been used already, or is not a link we issued");
        Assert.That(page.Url, Does.Not.Contain("token"));
        return page;
    }

    /// <summary>A subscription of <paramref name="user"/> to the receiver's <paramref name="path"/>, no retries, batched through the API.</summary>
    private async Task SubscribeBatchedAsync(string user, string path, int maxEvents, int maxWaitMs)
    {
        var created = await _portal.SubscribeAsync(user, path, retryCount: 0);
        using var client = _portal.Client(user);
        var batched = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$$"""{"batch": {"max_events": {{{maxEvents}}}, "max_wait_ms": {{{maxWaitMs}}}}}""");
        Assert.That(batched.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    /// <summary>In the operator view's search: finds the deliveries of <paramref name="eventId"/>; the row of <paramref name="user"/>'s.</summary>
    private static async Task<ILocator> FindByEventIdAsync(IPage page, Guid eventId, string user)
    {
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Find deliveries" })).ToBeVisibleAsync();
        await page.GetByLabel("Find by").SelectOptionAsync("event_id");
        await page.GetByLabel("Value").FillAsync(eventId.ToString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Find", Exact = true }).ClickAsync();
        return page.Locator("tbody tr").Filter(new() { HasText = user });
    }

    /// <summary>Waits until the delivery log shows the event's delivery in <paramref name="status"/>, pressing Refresh until it appears.</summary>
    private static async Task<ILocator> WaitForStatusAsync(IPage page, Guid eventId, string status)
    {
        var row = page.Locator($"tr[data-event='{eventId}']");
        var deadline = DateTime.UtcNow + Long;
        while (DateTime.UtcNow < deadline)
        {
            if (await row.CountAsync() == 1 && (await row.Locator(".badge").TextContentAsync()) == status) return row;
            if (await row.CountAsync() == 0) await page.GetByRole(AriaRole.Button, new() { Name = "Refresh" }).ClickAsync();
            await Task.Delay(500);
        }
        await Expect(row.Locator(".badge")).ToHaveTextAsync(status);
        return row;
    }

    private async Task<string?> StatusOfAsync(Guid eventId)
    {
        await using var db = await OpenDatabaseAsync();
        await using var command = new NpgsqlCommand("SELECT status FROM webhook_deliveries WHERE event_id = $1", db);
        command.Parameters.Add(new() { Value = eventId });
        return (string?)await command.ExecuteScalarAsync();
    }

    private async Task<Guid> DeliveryOfAsync(Guid eventId)
    {
        await using var db = await OpenDatabaseAsync();
        await using var command = new NpgsqlCommand("SELECT id FROM webhook_deliveries WHERE event_id = $1", db);
        command.Parameters.Add(new() { Value = eventId });
        return (Guid)(await command.ExecuteScalarAsync())!;
    }

    private async Task<int?> InlinePayloadLengthAsync(Guid eventId)
    {
        await using var db = await OpenDatabaseAsync();
        await using var command = new NpgsqlCommand("SELECT length(payload) FROM webhook_deliveries WHERE event_id = $1", db);
        command.Parameters.Add(new() { Value = eventId });
        return await command.ExecuteScalarAsync() is int length ? length : null;
    }

    private Task<NpgsqlConnection> OpenDatabaseAsync() =>
        _portal.Dispatcher.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync().AsTask();
}
