using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Shaping;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// What filters and templates cost, measured with a stopwatch on the run's PostgreSQL (a scratch
/// database): the fan-out statement with and without a filter on every subscription (alternated),
/// the predicate alone per row, and a template rendering per attempt, with the machine's
/// calibration beside them. Explicit: prints figures for docs/benchmarks/filters-templates.md.
/// </summary>
[Explicit("A measurement: about a minute, prints figures for docs/benchmarks/filters-templates.md")]
public sealed class ShapingCostBenchmark
{
    private const int Users = 20;
    private const int SubscriptionsPerUser = 10;
    private const int EventsPerStatement = 50;
    private const int Rounds = 40;

    /// <summary>A filter of the documented kind that selects every event this measurement publishes, so both variants insert the same rows.</summary>
    private const string Filter = """{"data.from": {"$prefix": "alice@"}, "data.to[]": {"$in": ["bob@example.com", "carol@example.com"]}, "$not": {"data.subject": {"$contains": "[draft]"}}}""";

    [Test]
    public async Task Measure()
    {
        await using var scratch = await ScratchDatabase.CreateAsync("shapingcost", migrate: true);
        await using var db = NpgsqlDataSource.Create(scratch.ConnectionString);
        var compiled = PayloadFilter.Compile(JsonDocument.Parse(Filter).RootElement);
        var plainUsers = await SubscribeAsync(db, "plain", null);
        var filteredUsers = await SubscribeAsync(db, "filtered", compiled.JsonPath);
        var store = new FanOutStore(db);
        // The first-seen statement at any hour (near midnight the store would take its other one).
        var now = Events.MiddayUtc;

        // Warm-up, then alternate so both variants see the same machine.
        for (var i = 0; i < 5; i++)
        {
            await store.FanOutAsync(Batch(plainUsers), now, CancellationToken.None);
            await store.FanOutAsync(Batch(filteredUsers), now, CancellationToken.None);
        }
        var plain = new List<double>();
        var filtered = new List<double>();
        for (var round = 0; round < Rounds; round++)
        {
            foreach (var (users, times) in round % 2 == 0 ? new[] { (plainUsers, plain), (filteredUsers, filtered) } : [(filteredUsers, filtered), (plainUsers, plain)])
            {
                var batch = Batch(users);
                var started = Stopwatch.GetTimestamp();
                var work = await store.FanOutAsync(batch, now, CancellationToken.None);
                times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                Assert.That(work, Has.Count.EqualTo(EventsPerStatement * SubscriptionsPerUser));
            }
        }
        var pairs = EventsPerStatement * SubscriptionsPerUser;
        Report($"fan-out statement, {EventsPerStatement} events x {SubscriptionsPerUser} subscriptions = {pairs} rows, {Rounds} each, alternated");
        Report($"  no filters:            median {Median(plain):F2} ms, mean {plain.Average():F2} ms ({Median(plain) * 1000 / pairs:F1} us per row)");
        Report($"  filter on every row:   median {Median(filtered):F2} ms, mean {filtered.Average():F2} ms ({Median(filtered) * 1000 / pairs:F1} us per row)");
        Report($"  difference per row:    {(Median(filtered) - Median(plain)) * 1000 / pairs:F1} us (medians)");

        // The predicate alone, per row: parse to jsonb, then @@.
        var payload = WebhookPayload.Build(Events.EmailReceived("u"));
        const int Rows = 50_000;
        double PerRow(double ms) => ms * 1000 / Rows;
        var none = await TimeAsync(db, "SELECT count(*) FROM (SELECT $1 || repeat(' ', g % 2) AS p FROM generate_series(1, $3) g) x WHERE length(p) > 0 AND $2 IS NOT NULL", payload, compiled.JsonPath!, Rows);
        var cast = await TimeAsync(db, "SELECT count(*) FROM (SELECT $1 || repeat(' ', g % 2) AS p FROM generate_series(1, $3) g) x WHERE p::jsonb IS NOT NULL AND $2 IS NOT NULL", payload, compiled.JsonPath!, Rows);
        var match = await TimeAsync(db, "SELECT count(*) FROM (SELECT $1 || repeat(' ', g % 2) AS p FROM generate_series(1, $3) g) x WHERE p::jsonb @@ $2::jsonpath", payload, compiled.JsonPath!, Rows);
        Report($"predicate alone over {Rows} rows of a {Encoding.UTF8.GetByteCount(payload)}-byte payload (best of 5):");
        Report($"  text -> jsonb:        {PerRow(cast - none):F2} us per row");
        Report($"  the filter's @@:      {PerRow(match - cast):F2} us per row (jsonpath: {compiled.JsonPath!.Length} characters)");

        // Rendering per attempt (parsed once, cached).
        var renderer = new TemplateRenderer();
        var body = Encoding.UTF8.GetBytes(payload);
        var custom = new WebhookTemplate(null, "{\"subject\": {{ data.subject | json }}, \"from\": {{ data.from | json }}, \"to\": {{ data.to | json }}}", null).ToJson();
        foreach (var (name, json) in new[] { ("slack", new WebhookTemplate("slack", null, null).ToJson()), ("teams", new WebhookTemplate("teams", null, null).ToJson()), ("custom 3 fields", custom) })
        {
            var id = Guid.NewGuid();
            for (var i = 0; i < 2_000; i++) renderer.Render(id, json, body, EventSizeLimit.DefaultMaxEventBytes);
            var best = double.MaxValue;
            for (var run = 0; run < 5; run++)
            {
                var started = Stopwatch.GetTimestamp();
                for (var i = 0; i < 5_000; i++) renderer.Render(id, json, body, EventSizeLimit.DefaultMaxEventBytes);
                best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalMicroseconds / 5_000);
            }
            Report($"render {name}: {best:F1} us per attempt (best of 5 x 5,000)");
        }

        // Calibration of this machine at this moment.
        var kib = RandomNumberGenerator.GetBytes(1024);
        var sha = Stopwatch.GetTimestamp();
        for (var i = 0; i < 200_000; i++) SHA256.HashData(kib);
        Report($"calibration: SHA-256 of 1 KiB {Stopwatch.GetElapsedTime(sha).TotalMicroseconds / 200_000:F2} us; ");
        await using (var cmd = db.CreateCommand("SELECT 1"))
        {
            for (var i = 0; i < 200; i++) await cmd.ExecuteScalarAsync();
            var rt = Stopwatch.GetTimestamp();
            for (var i = 0; i < 2_000; i++) await cmd.ExecuteScalarAsync();
            Report($"calibration: PostgreSQL SELECT 1 round trip {Stopwatch.GetElapsedTime(rt).TotalMicroseconds / 2_000:F0} us; cores {Environment.ProcessorCount}");
        }
    }

    private static void Report(string line) => TestContext.Out.WriteLine(line);

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static List<FanOutEvent> Batch(string[] users) =>
        [.. Enumerable.Range(0, EventsPerStatement).Select(i =>
        {
            var evt = Events.EmailReceived(users[i % users.Length]) with { To = ["bob@example.com", "carol@example.com"] };
            return new FanOutEvent(evt.EventId, evt.UserId, "email.received", WebhookPayload.Build(evt));
        })];

    private static async Task<string[]> SubscribeAsync(NpgsqlDataSource db, string prefix, string? filterPath)
    {
        var users = Enumerable.Range(0, Users).Select(i => $"{prefix}-{i}-{Guid.NewGuid():N}"[..30]).ToArray();
        await using var cmd = db.CreateCommand("""
            INSERT INTO webhook_subscriptions (id, user_id, url, event_types, secret, is_active, retry_count, timeout_seconds, filter, filter_path)
            SELECT gen_random_uuid(), u, 'https://hooks.example.com/' || u, ARRAY['email.received'], $2, true, 3, 10, $3, $4::jsonpath
            FROM unnest($1::text[]) AS u, generate_series(1, $5)
            """);
        cmd.Parameters.Add(new() { Value = users });
        cmd.Parameters.Add(new() { Value = WebhookSigner.NewSecret() });
        cmd.Parameters.Add(new() { Value = filterPath is null ? DBNull.Value : Filter });
        cmd.Parameters.Add(new() { Value = (object?)filterPath ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = SubscriptionsPerUser });
        await cmd.ExecuteNonQueryAsync();
        return users;
    }

    private static async Task<double> TimeAsync(NpgsqlDataSource db, string sql, string payload, string path, int rows)
    {
        var best = double.MaxValue;
        for (var run = 0; run < 6; run++)
        {
            await using var cmd = db.CreateCommand(sql);
            cmd.Parameters.Add(new() { Value = payload });
            cmd.Parameters.Add(new() { Value = path });
            cmd.Parameters.Add(new() { Value = rows });
            var started = Stopwatch.GetTimestamp();
            await cmd.ExecuteScalarAsync();
            if (run > 0) best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        return best;
    }
}
