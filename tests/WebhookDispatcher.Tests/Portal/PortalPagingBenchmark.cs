using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Npgsql;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>
/// The measurement behind docs/benchmarks/portal.md: one endpoint with 1,000,000 deliveries
/// (2,000,000 attempts) over 10 days in a database of its own, its delivery log paged through
/// the API as the portal pages it, and the portal's pages rendered in Chromium. Explicit: it
/// takes minutes and prints figures rather than asserting them (run it with
/// <c>deploy/test.sh --filter "FullyQualifiedName~PortalPagingBenchmark"</c>).
/// </summary>
[Explicit("A benchmark: minutes long, prints figures for docs/benchmarks/portal.md")]
[NonParallelizable]
public sealed class PortalPagingBenchmark
{
    private const int Deliveries = 1_000_000;
    private const int Days = 10;

    [Test]
    public async Task Paging_the_delivery_log_of_an_endpoint_with_a_million_deliveries()
    {
        await using var database = await ScratchDatabase.CreateAsync("portalbench", migrate: true);
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Dispatcher:Workers"] = "false",
        });
        var user = Events.NewUser();
        using var owner = dispatcher.Client(user);
        var subscription = (await owner.CreateAsync("https://example.com/hook", ["email.received", "task.completed"])).Id();

        await using var source = NpgsqlDataSource.Create(database.ConnectionString);
        var seed = Stopwatch.StartNew();
        await SeedAsync(source, subscription);
        TestContext.Out.WriteLine($"seeded {Deliveries:N0} deliveries and {2 * Deliveries:N0} attempts in {seed.Elapsed.TotalSeconds:F0} s");

        // What the list paid on every page before: a count of the subscription's deliveries.
        var counts = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var watch = Stopwatch.StartNew();
            await using var count = source.CreateCommand("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1");
            count.Parameters.Add(new() { Value = subscription });
            await count.ExecuteScalarAsync();
            counts.Add(watch.Elapsed.TotalMilliseconds);
        }
        Report("COUNT(*) of the subscription's deliveries (paid per page before)", counts);

        var link = await (await owner.PostAsJsonAsync("/api/webhooks/portal-sessions", new { expires_in_seconds = 3600 })).JsonAsync();
        var token = PortalHarness.TokenOf(link["url"]!.GetValue<string>());
        var opened = await (await dispatcher.Client(null).PostAsJsonAsync("/portal/session", new { token })).JsonAsync();
        using var session = dispatcher.Client(null);
        session.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        var path = $"/api/webhooks/{subscription}/deliveries";

        for (var i = 0; i < 20; i++) await session.GetAsync($"{path}?limit=25&include_attempts=true"); // warm-up
        Report("first page, 25 with attempts (portal's page)", await TimeAsync(session, Enumerable.Repeat($"{path}?limit=25&include_attempts=true", 200)));
        Report("walk by next_cursor, 25 with attempts, 400 pages", await WalkAsync(session, $"{path}?limit=25&include_attempts=true", 400));
        var cursors = await RandomCursorsAsync(source, subscription, 300);
        Report("deep pages at random positions, 25 with attempts", await TimeAsync(session, cursors.Select(c => $"{path}?limit=25&include_attempts=true&cursor={c}")));
        Report("walk, 100 a page without attempts, 200 pages", await WalkAsync(session, $"{path}?limit=100", 200));
        Report("walk, status=failed (2 %), 25 with attempts, 100 pages", await WalkAsync(session, $"{path}?limit=25&include_attempts=true&status=failed", 100));
        Report("walk, event_type=task.completed (10 %), 25 with attempts, 200 pages",
            await WalkAsync(session, $"{path}?limit=25&include_attempts=true&event_type=task.completed", 200));
        Report("since 5 days ago, 25 with attempts, 200 pages",
            await WalkAsync(session, $"{path}?limit=25&include_attempts=true&since={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-5).ToString("O", CultureInfo.InvariantCulture))}", 200));

        // The worst case of a filter: nothing matches, so the page reads every delivery of the endpoint.
        Report("status=cancelled, none of the 1,000,000 match (worst case)",
            await TimeAsync(session, Enumerable.Repeat($"{path}?limit=25&include_attempts=true&status=cancelled", 5)));
        Report("status=cancelled and since 1 day ago, none match",
            await TimeAsync(session, Enumerable.Repeat($"{path}?limit=25&include_attempts=true&status=cancelled&since={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-1).ToString("O", CultureInfo.InvariantCulture))}", 5)));

        // The pages in a real browser: open a link, then the endpoint with its log, then older deliveries.
        await using var context = await Chromium.ContextAsync();
        var (list, log, older) = (new List<double>(), new List<double>(), new List<double>());
        for (var i = 0; i < 12; i++)
        {
            var url = (await (await owner.PostAsJsonAsync("/api/webhooks/portal-sessions", new { })).JsonAsync())["url"]!.GetValue<string>();
            var page = await context.NewPageAsync();
            var watch = Stopwatch.StartNew();
            await page.GotoAsync(url);
            await Expect(page.GetByRole(AriaRole.Button, new() { Name = "https://example.com/hook" })).ToBeVisibleAsync();
            var a = watch.Elapsed.TotalMilliseconds;
            watch.Restart();
            await page.GetByRole(AriaRole.Button, new() { Name = "https://example.com/hook" }).ClickAsync();
            await Expect(page.Locator("table.deliveries tbody tr[data-delivery]")).ToHaveCountAsync(25);
            var b = watch.Elapsed.TotalMilliseconds;
            watch.Restart();
            await page.GetByRole(AriaRole.Button, new() { Name = "Load older deliveries" }).ClickAsync();
            await Expect(page.Locator("table.deliveries tbody tr[data-delivery]")).ToHaveCountAsync(50);
            var c = watch.Elapsed.TotalMilliseconds;
            await page.CloseAsync();
            if (i < 2) continue; // warm-up
            list.Add(a);
            log.Add(b);
            older.Add(c);
        }
        Report("browser: open link → endpoint list shown", list);
        Report("browser: endpoint → its log's first 25 deliveries shown", log);
        Report("browser: load older → 50 shown", older);
        await Chromium.CloseAsync();
    }

    private static async Task SeedAsync(NpgsqlDataSource source, Guid subscription)
    {
        var today = DateTime.UtcNow.Date;
        await using (var partitions = source.CreateCommand("SELECT webhook_ensure_history_partitions($1, $2)"))
        {
            partitions.Parameters.Add(new() { Value = DateOnly.FromDateTime(today.AddDays(-Days)) });
            partitions.Parameters.Add(new() { Value = DateOnly.FromDateTime(today.AddDays(1)) });
            await partitions.ExecuteNonQueryAsync();
        }
        var perDay = Deliveries / Days;
        for (var day = 0; day < Days; day++)
        {
            // Day by day, oldest first; the last day ends an hour ago. 2 % failed, 10 % task.completed.
            await using var insert = source.CreateCommand("""
                WITH d AS (
                    INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                                    response_status_code, created_at, first_attempt_at, last_attempt_at, completed_at)
                    SELECT webhook_uuid_v7_at(t, gen_random_uuid()), $1, CASE WHEN g % 10 = 0 THEN 'task.completed' ELSE 'email.received' END,
                           gen_random_uuid(), '{"id":"00000000-0000-0000-0000-000000000000","event_type":"email.received","data":{"subject":"Quarterly report"}}',
                           CASE WHEN g % 50 = 7 THEN 'failed' ELSE 'success' END, 2, 2, CASE WHEN g % 50 = 7 THEN 500 ELSE 200 END, t, t, t, t
                    FROM (SELECT g, $2::timestamptz + g * (interval '1 day' - interval '1 hour') / $3 AS t FROM generate_series(0, $3 - 1) g) s
                    RETURNING id, created_at, status),
                a AS (
                    INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome, response_excerpt)
                    SELECT d.id, n, d.created_at, 40, CASE WHEN n = 1 OR d.status = 'failed' THEN 500 ELSE 200 END,
                           CASE WHEN n = 1 OR d.status = 'failed' THEN 'http_status' ELSE 'success' END, 'upstream timeout'
                    FROM d, generate_series(1, 2) n
                    RETURNING 1)
                SELECT count(*) FROM a
                """);
            insert.CommandTimeout = 0;
            insert.Parameters.Add(new() { Value = subscription });
            insert.Parameters.Add(new() { Value = new DateTimeOffset(today.AddDays(day - Days + 1), TimeSpan.Zero) });
            insert.Parameters.Add(new() { Value = perDay });
            await insert.ExecuteScalarAsync();
        }
        await using var analyze = source.CreateCommand("VACUUM ANALYZE webhook_deliveries, webhook_delivery_attempts");
        analyze.CommandTimeout = 0;
        await analyze.ExecuteNonQueryAsync();
    }

    private static async Task<List<string>> RandomCursorsAsync(NpgsqlDataSource source, Guid subscription, int count)
    {
        await using var sample = source.CreateCommand(
            "SELECT created_at, id FROM webhook_deliveries TABLESAMPLE SYSTEM (1) WHERE subscription_id = $1 ORDER BY random() LIMIT $2");
        sample.Parameters.Add(new() { Value = subscription });
        sample.Parameters.Add(new() { Value = count });
        var cursors = new List<string>();
        await using var reader = await sample.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            cursors.Add(new PageCursor(PageCursor.Lists.Deliveries, subscription, reader.GetFieldValue<DateTimeOffset>(0), reader.GetGuid(1)).Encode());
        return cursors;
    }

    private static async Task<List<double>> TimeAsync(HttpClient client, IEnumerable<string> urls)
    {
        var times = new List<double>();
        foreach (var url in urls)
        {
            var watch = Stopwatch.StartNew();
            var response = await client.GetAsync(url);
            await response.Content.ReadAsByteArrayAsync();
            times.Add(watch.Elapsed.TotalMilliseconds);
            response.EnsureSuccessStatusCode();
        }
        return times;
    }

    private static async Task<List<double>> WalkAsync(HttpClient client, string first, int pages)
    {
        var times = new List<double>();
        var url = first;
        for (var i = 0; i < pages && url is not null; i++)
        {
            var watch = Stopwatch.StartNew();
            var response = await client.GetAsync(url);
            var page = await response.JsonAsync();
            times.Add(watch.Elapsed.TotalMilliseconds);
            response.EnsureSuccessStatusCode();
            Assert.That(page["total"], Is.Null, "no page counts");
            url = page["next_cursor"] is { } next ? $"{first}&cursor={next.GetValue<string>()}" : null;
        }
        return times;
    }

    private static void Report(string what, List<double> times)
    {
        var sorted = times.Order().ToList();
        double At(double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
        TestContext.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {what} | {sorted.Count} | {At(0.5):F1} | {At(0.95):F1} | {At(0.99):F1} | {sorted[^1]:F1} |"));
    }
}
