using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>
/// The operator audit trail (<c>webhook_operator_audit</c>, <c>GET /api/operator/audit</c>) on the
/// shared dispatcher: every change asked for through the operator API is stored with the operator,
/// the owner and the answer, refused ones included; operators read it, users never.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class OperatorAuditTests
{
    [Test]
    public async Task Every_operator_change_is_stored_with_who_whose_and_the_answer_and_only_operators_read_it()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var operatorId = "ops-" + Guid.NewGuid().ToString("N")[..8];
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/audit", ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, "failed", TimeSpan.FromSeconds(60)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        using var session = await OperatorSessionAsync(operatorId, readOnly: false);

        var retried = await session.PostAsync($"/api/operator/deliveries/{delivery.Id}/retry", null);
        var recovered = await session.PostAsJsonAsync($"/api/operator/webhooks/{subscription.Id}/recover", new { since = DateTimeOffset.UtcNow.AddHours(1).ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture) });
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(s => s.Id == subscription.Id).ExecuteUpdateAsync(s => s.SetProperty(x => x.IsActive, false)));
        var refused = await session.PostAsync($"/api/operator/deliveries/{delivery.Id}/retry", null);
        Assert.That(new[] { retried.StatusCode, recovered.StatusCode, refused.StatusCode },
            Is.EqualTo(new[] { HttpStatusCode.Accepted, HttpStatusCode.Accepted, HttpStatusCode.Conflict }));

        var trail = await (await session.GetAsync($"/api/operator/audit?user_id={user}")).JsonAsync();
        var entries = trail["data"]!.AsArray().Select(e => e!).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(entries.Select(e => e["action"]!.GetValue<string>()), Is.EqualTo(new[] { "retry_delivery", "recover_deliveries", "retry_delivery" }),
                "newest first");
            Assert.That(entries.Select(e => e["status_code"]!.GetValue<int>()), Is.EqualTo(new[] { 409, 202, 202 }));
            Assert.That(entries.Select(e => e["result"]!.GetValue<string>()),
                Is.EqualTo(new[] { "Subscription is disabled", "0 restarted", "a new round of attempts started" }));
            Assert.That(entries.Select(e => e["operator"]!.GetValue<string>()), Is.All.EqualTo(operatorId));
            Assert.That(entries.Select(e => e["user_id"]!.GetValue<string>()), Is.All.EqualTo(user));
            Assert.That(entries.Select(e => e["subscription_id"]!.GetValue<Guid>()), Is.All.EqualTo(subscription.Id));
            Assert.That(entries[0]["delivery_id"]!.GetValue<Guid>(), Is.EqualTo(delivery.Id));
            Assert.That(entries[1]["delivery_id"], Is.Null);
            Assert.That(entries[1]["since"]!.GetValue<DateTimeOffset>(), Is.GreaterThan(DateTimeOffset.UtcNow));
            Assert.That(trail["has_more"]!.GetValue<bool>(), Is.False);
        });

        var byOperator = await (await session.GetAsync($"/api/operator/audit?operator={operatorId}&limit=2")).JsonAsync();
        Assert.That(byOperator["data"]!.AsArray(), Has.Count.EqualTo(2));
        Assert.That(byOperator["has_more"]!.GetValue<bool>(), Is.True);
        using var looking = await OperatorSessionAsync(operatorId, readOnly: true);
        Assert.That((await looking.GetAsync($"/api/operator/audit?user_id={user}")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "a read-only operator reads it");
        var bad = await session.GetAsync("/api/operator/audit?limit=0&operator=%20padded");
        Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await bad.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "limit", "operator" }));

        using var owner = TestTokens.Client(user);
        Assert.That((await owner.GetAsync($"/api/operator/audit?user_id={user}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a user's JWT");
        var link = await (await owner.PostAsJsonAsync("/api/webhooks/portal-sessions", new { })).JsonAsync();
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session",
            new { token = PortalHarness.TokenOf(link["url"]!.GetValue<string>()) })).JsonAsync();
        using var userSession = TestTokens.Client(null);
        userSession.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        Assert.That((await userSession.GetAsync($"/api/operator/audit?user_id={user}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a user's session");
    }

    [Test]
    public async Task An_operators_search_pages_through_every_match_by_cursor_newest_first()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/paged", ["email.received"]);
        for (var i = 0; i < 5; i++)
            await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.EventuallyAsync(async () => (await Dispatcher.DeliveriesAsync(subscription.Id)).Count == 5, TimeSpan.FromSeconds(60)), Is.True);
        var expected = (await Dispatcher.DeliveriesAsync(subscription.Id)).OrderByDescending(d => d.CreatedAt).ThenByDescending(d => d.Id).Select(d => d.Id).ToList();
        using var session = await OperatorSessionAsync("ops-" + Guid.NewGuid().ToString("N")[..8], readOnly: true);

        var seen = new List<Guid>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var query = $"/api/operator/deliveries?user_id={user}&limit=2" + (cursor is null ? "" : $"&cursor={cursor}");
            var page = await (await session.GetAsync(query)).JsonAsync();
            seen.AddRange(page["data"]!.AsArray().Select(o => o!["delivery"]!["id"]!.GetValue<Guid>()));
            cursor = page["next_cursor"]?.GetValue<string>();
            Assert.That(page["has_more"]!.GetValue<bool>(), Is.EqualTo(cursor is not null));
        } while (cursor is not null && ++pages < 10);
        Assert.That(seen, Is.EqualTo(expected), "every match once, newest first, over three pages");

        var bad = await session.GetAsync($"/api/operator/deliveries?user_id={user}&cursor=not-a-cursor");
        Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await bad.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "cursor" }));
    }

    [Test]
    public async Task The_operators_webhook_list_and_audit_trail_page_through_every_entry_by_cursor_newest_first()
    {
        var user = Events.NewUser();
        var operatorId = "ops-" + Guid.NewGuid().ToString("N")[..8];
        var subscriptions = new List<Guid>();
        for (var i = 0; i < 5; i++)
            subscriptions.Add((await Dispatcher.SubscribeAsync(user, $"https://hooks.example.com/list-{i}", ["email.received"])).Id);
        // Audit rows as the operator's actions store them (their times a millisecond apart).
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlInterpolatedAsync($"""
            INSERT INTO webhook_operator_audit (id, created_at, operator, action, subscription_id, user_id, status_code, result)
            SELECT gen_random_uuid(), now() - make_interval(secs => g / 1000.0), {operatorId}, 'retry_delivery', {subscriptions[0]}, {user}, 202, 'accepted'
            FROM generate_series(1, 5) g
            """));
        using var session = await OperatorSessionAsync(operatorId, readOnly: true);

        async Task<List<string>> WalkAsync(string path, Func<JsonNode, string> id)
        {
            var seen = new List<string>();
            string? cursor = null;
            var pages = 0;
            do
            {
                var page = await (await session.GetAsync(path + "&limit=2" + (cursor is null ? "" : $"&cursor={cursor}"))).JsonAsync();
                seen.AddRange(page["data"]!.AsArray().Select(o => id(o!)));
                cursor = page["next_cursor"]?.GetValue<string>();
                Assert.That(page["has_more"]!.GetValue<bool>(), Is.EqualTo(cursor is not null), path);
            } while (cursor is not null && ++pages < 10);
            return seen;
        }

        var webhooks = await WalkAsync($"/api/operator/webhooks?user_id={user}", o => o["webhook"]!["id"]!.GetValue<string>());
        var audit = await WalkAsync($"/api/operator/audit?operator={operatorId}", o => o["id"]!.GetValue<string>());
        var expectedAudit = await Dispatcher.QueryAsync(db => db.Database.SqlQuery<Guid>(
            $"SELECT id AS \"Value\" FROM webhook_operator_audit WHERE operator = {operatorId} ORDER BY created_at DESC, id DESC").ToListAsync());
        Assert.Multiple(() =>
        {
            Assert.That(webhooks, Is.EqualTo(Enumerable.Reverse(subscriptions).Select(x => x.ToString())), "every webhook once, newest first");
            Assert.That(audit, Is.EqualTo(expectedAudit.Select(x => x.ToString())), "every audit entry once, newest first");
        });
        var bad = await session.GetAsync($"/api/operator/audit?operator={operatorId}&cursor=not-a-cursor");
        Assert.That((await bad.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "cursor" }));
    }

    [Test]
    public async Task A_read_only_operators_refused_changes_are_in_the_audit_trail_and_change_nothing()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var operatorId = "ops-" + Guid.NewGuid().ToString("N")[..8];
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/ro", ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, "failed", TimeSpan.FromSeconds(60)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        using var looking = await OperatorSessionAsync(operatorId, readOnly: true);

        var retried = await looking.PostAsync($"/api/operator/deliveries/{delivery.Id}/retry", null);
        var recovered = await looking.PostAsJsonAsync($"/api/operator/webhooks/{subscription.Id}/recover", new { since = "2026-01-01T00:00:00Z" });

        var trail = await (await looking.GetAsync($"/api/operator/audit?user_id={user}")).JsonAsync();
        var entries = trail["data"]!.AsArray().Select(e => e!).ToList();
        Assert.Multiple(async () =>
        {
            Assert.That(new[] { retried.StatusCode, recovered.StatusCode }, Is.All.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await retried.JsonAsync())["title"]!.GetValue<string>(), Is.EqualTo("Read-only portal session"));
            Assert.That(entries.Select(e => e["action"]!.GetValue<string>()), Is.EqualTo(new[] { "recover_deliveries", "retry_delivery" }));
            Assert.That(entries.Select(e => e["status_code"]!.GetValue<int>()), Is.All.EqualTo(403));
            Assert.That(entries.Select(e => e["operator"]!.GetValue<string>()), Is.All.EqualTo(operatorId));
            Assert.That((await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Status, Is.EqualTo("failed"), "nothing changed");
        });
    }

    [Test]
    public async Task Operators_see_an_endpoints_host_and_first_path_segment_not_the_credential_a_url_may_carry_and_find_it_by_its_whole_host()
    {
        var user = Events.NewUser();
        var host = $"hooks-{Guid.NewGuid():N}.example.com";
        using var api = TestTokens.Client(user);
        var slack = await api.CreateAsync($"https://{host}/services/T000/B000/XXXXSECRETXXXX", ["email.received"]);
        await api.CreateAsync($"https://{host}.evil.net/services/T1/B1/y", ["email.received"]);
        await api.CreateAsync($"https://{host}/workflows?sig=SIGSECRET", ["email.received"]);
        await api.CreateAsync($"https://{host.ToUpperInvariant()}./hook", ["email.received"]); // another spelling of the host
        using var session = await OperatorSessionAsync("ops-" + Guid.NewGuid().ToString("N")[..8], readOnly: true);

        var found = await (await session.GetAsync($"/api/operator/webhooks?host={host}")).JsonAsync();
        var urls = found["data"]!.AsArray().Select(e => e!["webhook"]!["url"]!.GetValue<string>()).ToList();

        Assert.Multiple(async () =>
        {
            Assert.That(urls, Has.Count.EqualTo(3), "not the endpoint on another host that starts with the same name");
            Assert.That(urls, Does.Contain($"https://{host}/services/…(redacted)").And.Contain($"https://{host}/workflows?…(redacted)"));
            Assert.That(found.ToJsonString(), Does.Not.Contain("SECRET"));
            var own = await (await api.GetAsync($"/api/webhooks/{slack.Id()}")).JsonAsync();
            Assert.That(own["url"]!.GetValue<string>(), Does.EndWith("XXXXSECRETXXXX"), "the user sees the URL whole");
        });
    }

    [Test]
    public async Task Operators_do_not_see_the_hidden_part_of_an_endpoints_url_in_what_its_receiver_answered()
    {
        // Express's default 404 repeats the request's path and query.
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = 404;
            await Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(c.Response, $"Cannot POST {c.Request.Path}{c.Request.QueryString}");
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/express/T000/SECRETPATH?sig=QUERYSECRET", ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, "failed", TimeSpan.FromSeconds(60)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        using var session = await OperatorSessionAsync("ops-" + Guid.NewGuid().ToString("N")[..8], readOnly: true);

        var detail = await (await session.GetAsync($"/api/operator/deliveries/{delivery.Id}")).Content.ReadAsStringAsync();
        var found = await (await session.GetAsync($"/api/operator/deliveries?subscription_id={subscription.Id}")).Content.ReadAsStringAsync();
        using var owner = TestTokens.Client(user);
        var own = await (await owner.GetAsync($"/api/webhooks/{subscription.Id}/deliveries?include_attempts=true")).Content.ReadAsStringAsync();

        Assert.Multiple(() =>
        {
            foreach (var seen in new[] { detail, found })
            {
                Assert.That(seen, Does.Contain("Cannot POST /express"), "the answer is shown");
                Assert.That(seen, Does.Not.Contain("SECRETPATH").And.Not.Contain("QUERYSECRET"));
            }
            Assert.That(own, Does.Contain("SECRETPATH"), "the owner sees what the receiver answered, whole");
        });
    }

    private static async Task<HttpClient> OperatorSessionAsync(string operatorId, bool readOnly)
    {
        using var staff = TestTokens.Client(null);
        staff.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            operatorId, TimeSpan.FromHours(1), "webhooks:operator"));
        JsonNode link = await (await staff.PostAsJsonAsync("/api/operator/portal-sessions", new { read_only = readOnly })).JsonAsync();
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session",
            new { token = PortalHarness.TokenOf(link["url"]!.GetValue<string>()) })).JsonAsync();
        var session = TestTokens.Client(null);
        session.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        return session;
    }
}
