using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>Portal links and sessions over HTTP, on the shared dispatcher (the browser's side is in <see cref="PortalBrowserTests"/>).</summary>
[Parallelizable(ParallelScope.All)]
public sealed class PortalSessionApiTests
{
    [Test]
    public async Task Past_links_per_minute_a_request_for_a_link_answers_429_with_Retry_After_and_stores_nothing()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        const int limit = 30; // Portal:LinksPerMinute, default
        for (var i = 0; i < limit; i++)
            Assert.That((await client.PostJsonAsync("/api/webhooks/portal-sessions", "{}")).StatusCode, Is.EqualTo(HttpStatusCode.Created), $"link {i + 1}");

        // The oldest of the 30 made 45 s earlier: a place frees when it is 60 s old, about 15 s from now.
        await using (var db = await OpenAsync())
        await using (var backdate = new NpgsqlCommand("""
            UPDATE webhook_portal_sessions SET created_at = created_at - interval '45 seconds'
            WHERE id = (SELECT id FROM webhook_portal_sessions WHERE created_by = $1 ORDER BY created_at LIMIT 1)
            """, db))
        {
            backdate.Parameters.Add(new() { Value = user });
            Assert.That(await backdate.ExecuteNonQueryAsync(), Is.EqualTo(1));
        }

        var refused = await client.PostJsonAsync("/api/webhooks/portal-sessions", "{}");

        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        var problem = await refused.JsonAsync();
        Assert.That(refused.Headers.RetryAfter?.Delta?.TotalSeconds, Is.InRange(10, 15), "when the oldest link of the window is a minute old");
        Assert.That(problem["retry_after_seconds"]!.GetValue<int>(), Is.EqualTo((int)refused.Headers.RetryAfter!.Delta!.Value.TotalSeconds));
        Assert.That(problem["limit"]!.GetValue<int>(), Is.EqualTo(limit));
        Assert.That(await RowsCreatedByAsync(user), Is.EqualTo(limit), "the refused request stored nothing");
        using var other = TestTokens.Client(Events.NewUser());
        Assert.That((await other.PostJsonAsync("/api/webhooks/portal-sessions", "{}")).StatusCode, Is.EqualTo(HttpStatusCode.Created), "another user's portal is not limited by it");
    }

    [Test]
    public async Task Concurrent_requests_for_links_make_no_more_than_the_limit_and_an_operator_of_the_same_name_is_counted_apart()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        const int limit = 30; // Portal:LinksPerMinute, default

        var answers = await Task.WhenAll(Enumerable.Range(0, 45).Select(_ => client.PostJsonAsync("/api/webhooks/portal-sessions", "{}")));

        Assert.That(answers.Count(a => a.StatusCode == HttpStatusCode.Created), Is.EqualTo(limit));
        Assert.That(answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests), Is.EqualTo(45 - limit));
        Assert.That(await RowsCreatedByAsync(user), Is.EqualTo(limit));
        // An operator whose id is the same string has a portal of its own.
        using var staff = TestTokens.Client(null);
        staff.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            user, TimeSpan.FromHours(1), "webhooks:operator"));
        Assert.That((await staff.PostJsonAsync("/api/operator/portal-sessions", "{}")).StatusCode, Is.EqualTo(HttpStatusCode.Created));
    }

    [Test]
    public async Task A_bad_request_for_a_link_names_every_bad_field_and_stores_nothing()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        foreach (var (body, fields) in new (string, string[])[]
                 {
                     ("""{"expires_in_seconds": 59}""", ["expires_in_seconds"]),
                     ("""{"expires_in_seconds": 86401}""", ["expires_in_seconds"]),
                     ("""{"expires_in_seconds": "600", "read_only": "yes"}""", ["expires_in_seconds", "read_only"]),
                     ("""{"expires_in_seconds": 600.5}""", ["expires_in_seconds"]),
                     ("""{"read_only": true, "user_id": "someone-else"}""", ["user_id"]),
                     ("[]", ["body"]),
                 })
        {
            var response = await client.PostJsonAsync("/api/webhooks/portal-sessions", body);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body);
            Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(fields), body);
        }
        Assert.That((await client.PostAsync("/api/webhooks/portal-sessions", new StringContent("{}", Encoding.UTF8, "text/plain"))).StatusCode,
            Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
        Assert.That((await TestTokens.Client(null).PostJsonAsync("/api/webhooks/portal-sessions", "{}")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(await RowsCreatedByAsync(user), Is.Zero);
    }

    [Test]
    public async Task A_link_carries_its_token_in_the_fragment_only_its_hash_is_stored_and_it_opens_once()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var response = await client.PostJsonAsync("/api/webhooks/portal-sessions", """{"read_only": true, "expires_in_seconds": 120}""");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        var link = await response.JsonAsync();
        var url = link["url"]!.GetValue<string>();
        var token = url[(url.IndexOf("#token=", StringComparison.Ordinal) + 7)..];
        Assert.Multiple(() =>
        {
            Assert.That(url, Does.Match(@"^http://localhost/portal#token=wdpl_[A-Za-z0-9_-]{43}$"));
            Assert.That(link["read_only"]!.GetValue<bool>(), Is.True);
            Assert.That(link["expires_at"]!.GetValue<DateTimeOffset>(), Is.GreaterThan(DateTimeOffset.UtcNow.AddSeconds(-5)));
        });
        await using (var db = await OpenAsync())
        await using (var stored = new NpgsqlCommand(
            "SELECT link_hash, coalesce(user_id, '') || coalesce(operator, '') || created_by, read_only FROM webhook_portal_sessions WHERE created_by = $1", db))
        {
            stored.Parameters.Add(new() { Value = user });
            await using var row = await stored.ExecuteReaderAsync();
            Assert.That(await row.ReadAsync(), Is.True);
            Assert.That(row.GetFieldValue<byte[]>(0), Is.EqualTo(SHA256.HashData(Encoding.UTF8.GetBytes(token))));
            Assert.That(row.GetString(1), Does.Not.Contain(token[5..]));
            Assert.That(row.GetBoolean(2), Is.True);
        }

        using var anonymous = TestTokens.Client(null);
        var extra = await anonymous.PostJsonAsync("/portal/session", $$"""{"token": "{{token}}", "extra": 1}""");
        Assert.That(extra.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "an unknown field is refused");
        Assert.That((await extra.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "extra" }));

        // Two browsers racing to open the same link (not used up by the refused one): exactly one session.
        var opens = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => anonymous.PostAsJsonAsync("/portal/session", new { token })));
        Assert.That(opens.Count(r => r.StatusCode == HttpStatusCode.OK), Is.EqualTo(1));
        Assert.That(opens.Where(r => r.StatusCode != HttpStatusCode.OK).Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.Unauthorized));
        var session = await opens.Single(r => r.StatusCode == HttpStatusCode.OK).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(opens[0].Headers.CacheControl?.NoStore, Is.True);
            Assert.That(session["scope"]!.GetValue<string>(), Is.EqualTo("user"));
            Assert.That(session["user_id"]!.GetValue<string>(), Is.EqualTo(user));
            Assert.That(session["read_only"]!.GetValue<bool>(), Is.True);
            Assert.That(session["session_token"]!.GetValue<string>(), Does.Match("^wdps_[A-Za-z0-9_-]{43}$"));
        });
    }

    [Test]
    public async Task A_session_works_until_it_ends_and_cannot_mint_links()
    {
        var user = Events.NewUser();
        using var owner = TestTokens.Client(user);
        await owner.CreateAsync("https://example.com/hook", ["email.received"]);
        var (session, sessionToken) = await OpenSessionAsync(user, readOnly: false);
        using (session)
        {
            var list = await (await session.GetAsync("/api/webhooks")).JsonAsync();
            Assert.That(list["data"]!.AsArray(), Has.Count.EqualTo(1), "the session is the user");
            var mint = await session.PostJsonAsync("/api/webhooks/portal-sessions", "{}");
            Assert.That(mint.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a session cannot extend itself with a new link");

            await using (var db = await OpenAsync())
            await using (var end = new NpgsqlCommand("UPDATE webhook_portal_sessions SET session_expires_at = now() - interval '1 second' WHERE created_by = $1", db))
            {
                end.Parameters.Add(new() { Value = user });
                Assert.That(await end.ExecuteNonQueryAsync(), Is.EqualTo(1));
            }
            Assert.That((await session.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "an ended session is refused");
        }
        using var tampered = TestTokens.Client(null);
        tampered.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", sessionToken[..^1] + (sessionToken[^1] == 'A' ? 'B' : 'A'));
        Assert.That((await tampered.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task Signing_out_ends_the_session_at_once_read_only_and_operator_sessions_included_and_a_jwt_has_nothing_to_end()
    {
        var user = Events.NewUser();
        var (session, _) = await OpenSessionAsync(user, readOnly: true);
        var (other, _) = await OpenSessionAsync(user, readOnly: false);
        using (session)
        using (other)
        {
            Assert.That((await session.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the session works before");
            var end = await session.DeleteAsync("/portal/session");
            Assert.That(end.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), "a read-only session may sign out: it changes nothing else");
            Assert.That((await session.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "refused at once");
            Assert.That((await session.DeleteAsync("/portal/session")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That((await other.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "only the session that signed out ends");
        }
        await using (var db = await OpenAsync())
        await using (var ended = new NpgsqlCommand(
            "SELECT count(*) FILTER (WHERE session_expires_at <= now()), count(*) FROM webhook_portal_sessions WHERE created_by = $1", db))
        {
            ended.Parameters.Add(new() { Value = user });
            await using var row = await ended.ExecuteReaderAsync();
            await row.ReadAsync();
            Assert.That((row.GetInt64(0), row.GetInt64(1)), Is.EqualTo((1L, 2L)), "the ended session's row says so");
        }

        using var jwt = TestTokens.Client(user);
        Assert.That((await jwt.DeleteAsync("/portal/session")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a JWT is no portal session");
        Assert.That((await TestTokens.Client(null).DeleteAsync("/portal/session")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));

        using var staff = TestTokens.Client(null);
        staff.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            "ops-carol", TimeSpan.FromHours(1), "webhooks:operator"));
        var link = await (await staff.PostJsonAsync("/api/operator/portal-sessions", "{}")).JsonAsync();
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session",
            new { token = PortalHarness.TokenOf(link["url"]!.GetValue<string>()) })).JsonAsync();
        using var operatorSession = TestTokens.Client(null);
        operatorSession.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        Assert.That((await operatorSession.GetAsync("/api/operator/deliveries?user_id=nobody")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await operatorSession.DeleteAsync("/portal/session")).StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
        Assert.That((await operatorSession.GetAsync("/api/operator/deliveries?user_id=nobody")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task A_service_credential_names_the_user_and_a_users_own_token_cannot()
    {
        var (user, other, backend) = (Events.NewUser(), Events.NewUser(), "notely-backend-" + Guid.NewGuid().ToString("N"));
        using var service = TestTokens.Client(null);
        service.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            backend, TimeSpan.FromHours(1), "webhooks:portal-links"));
        var created = await service.PostAsJsonAsync("/api/webhooks/portal-sessions", new { user_id = user, read_only = true });
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Created), await created.Content.ReadAsStringAsync());
        var token = PortalHarness.TokenOf((await created.JsonAsync())["url"]!.GetValue<string>());
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session", new { token })).JsonAsync();
        Assert.That(opened["user_id"]!.GetValue<string>(), Is.EqualTo(user));
        Assert.That(opened["read_only"]!.GetValue<bool>(), Is.True);

        using var own = TestTokens.Client(other);
        var refused = await own.PostAsJsonAsync("/api/webhooks/portal-sessions", new { user_id = user });
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await refused.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "user_id" }));
        var padded = await service.PostAsJsonAsync("/api/webhooks/portal-sessions", new { user_id = " padded" });
        Assert.That(padded.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await padded.JsonAsync())["errors"]!["user_id"]![0]!.GetValue<string>(), Does.StartWith("Must be a user id"),
            "a bad user id is named as such, not as a missing one");
        Assert.That(await RowsCreatedByAsync(other), Is.Zero);

        // A service credential that forgets the user gets no portal of its own.
        var unnamed = await service.PostJsonAsync("/api/webhooks/portal-sessions", """{"read_only": true}""");
        Assert.That(unnamed.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await unnamed.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "user_id" }));
        Assert.That(await RowsCreatedByAsync(backend), Is.EqualTo(1), "only the link that named the user");
    }

    [Test]
    public async Task Operator_links_need_the_operator_scope_and_operator_sessions_reach_only_the_operator_api()
    {
        using var user = TestTokens.Client(Events.NewUser());
        Assert.That((await user.PostJsonAsync("/api/operator/portal-sessions", "{}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));

        using var staff = TestTokens.Client(null);
        staff.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            "ops-bob", TimeSpan.FromHours(1), "profile webhooks:operator"));
        var link = await staff.PostJsonAsync("/api/operator/portal-sessions", """{"expires_in_seconds": 60}""");
        Assert.That(link.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        var token = PortalHarness.TokenOf((await link.JsonAsync())["url"]!.GetValue<string>());
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session", new { token })).JsonAsync();
        Assert.That(opened["scope"]!.GetValue<string>(), Is.EqualTo("operator"));
        Assert.That(opened["operator"]!.GetValue<string>(), Is.EqualTo("ops-bob"));

        using var session = TestTokens.Client(null);
        session.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        Assert.Multiple(async () =>
        {
            Assert.That((await session.GetAsync("/api/operator/deliveries?user_id=nobody")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((await session.GetAsync("/api/operator/deliveries")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "a search needs a key");
            Assert.That((await session.GetAsync("/api/operator/deliveries?event_id=nope")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await session.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "an operator is no user");
            Assert.That((await staff.GetAsync("/api/operator/deliveries?user_id=nobody")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden),
                "the operator API takes an operator session, not the JWT itself");
        });

        // A read-only operator link looks and changes nothing (the same rule as a user's).
        var readOnlyLink = await (await staff.PostJsonAsync("/api/operator/portal-sessions", """{"read_only": true}""")).JsonAsync();
        var readOnly = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session",
            new { token = PortalHarness.TokenOf(readOnlyLink["url"]!.GetValue<string>()) })).JsonAsync();
        using var looking = TestTokens.Client(null);
        looking.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", readOnly["session_token"]!.GetValue<string>());
        Assert.Multiple(async () =>
        {
            Assert.That((await looking.GetAsync("/api/operator/deliveries?user_id=nobody")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((await looking.PostAsync($"/api/operator/deliveries/{Guid.NewGuid()}/retry", null)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await looking.PostJsonAsync($"/api/operator/webhooks/{Guid.NewGuid()}/recover", """{"since": "2026-01-01T00:00:00Z"}""")).StatusCode,
                Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await session.PostAsync($"/api/operator/deliveries/{Guid.NewGuid()}/retry", null)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound),
                "the same call from a session that may change things reaches the handler");
        });
    }

    [Test]
    public async Task The_delivery_list_never_counts_and_filters_by_event_type_and_time()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var id = (await client.CreateAsync("https://example.com/hook", ["email.received"])).Id();

        var page = await (await client.GetAsync($"/api/webhooks/{id}/deliveries?event_type=task.completed&since=2026-01-01T00:00:00Z&until=2030-01-01T00:00:00%2B01:00")).JsonAsync();
        Assert.That(page["total"], Is.Null);
        Assert.That(page["data"]!.AsArray(), Is.Empty);
        var bad = await client.GetAsync($"/api/webhooks/{id}/deliveries?since=2026-01-01T00:00:00&until=yesterday&event_type=nope");
        Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await bad.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "since", "until", "event_type" }), "a time without its offset is refused");
        var recover = await client.PostJsonAsync($"/api/webhooks/{id}/recover", """{"since": "2026-01-01", "extra": 1}""");
        Assert.That((await recover.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "since", "extra" }));
        var none = await client.PostJsonAsync($"/api/webhooks/{id}/recover", """{"since": "2026-01-01T00:00:00Z"}""");
        Assert.That(none.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That((await none.JsonAsync())["recovered"]!.GetValue<int>(), Is.Zero);
        Assert.That((await TestTokens.Client(Events.NewUser()).PostJsonAsync($"/api/webhooks/{id}/recover", """{"since": "2026-01-01T00:00:00Z"}""")).StatusCode,
            Is.EqualTo(HttpStatusCode.NotFound), "another user's subscription");
    }

    private static async Task<(HttpClient Client, string Token)> OpenSessionAsync(string user, bool readOnly)
    {
        using var client = TestTokens.Client(user);
        var link = await (await client.PostAsJsonAsync("/api/webhooks/portal-sessions", new { read_only = readOnly })).JsonAsync();
        var token = PortalHarness.TokenOf(link["url"]!.GetValue<string>());
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session", new { token })).JsonAsync();
        var sessionToken = opened["session_token"]!.GetValue<string>();
        var session = TestTokens.Client(null);
        session.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", sessionToken);
        return (session, sessionToken);
    }

    private static async Task<long> RowsCreatedByAsync(string user)
    {
        await using var db = await OpenAsync();
        await using var count = new NpgsqlCommand("SELECT count(*) FROM webhook_portal_sessions WHERE created_by = $1", db);
        count.Parameters.Add(new() { Value = user });
        return (long)(await count.ExecuteScalarAsync())!;
    }

    private static Task<NpgsqlConnection> OpenAsync() => Dispatcher.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync().AsTask();
}
