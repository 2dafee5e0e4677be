using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// History retention on the run's database: expired days of deliveries and attempts go, whole or
/// row by row, and nothing unfinished or recent is touched. Not parallel: a pass detaches
/// partitions, which waits for every open transaction on the tables.
/// </summary>
[NonParallelizable]
public sealed class RetentionTests
{
    private static HistoryRetention Retention => Dispatcher.Services.GetRequiredService<HistoryRetention>();

    private static async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(TestInfrastructure.Postgres);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<long> ScalarAsync(string sql, params object[] values)
    {
        await using var connection = await OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        return Convert.ToInt64(await cmd.ExecuteScalarAsync());
    }

    /// <summary>Makes the day's partitions and stores deliveries created that day (noon UTC) with the given statuses, two attempts each.</summary>
    private static async Task<List<Guid>> StoreDayAsync(DateOnly day, Guid subscriptionId, params string[] statuses)
    {
        await ScalarAsync("SELECT webhook_ensure_history_partitions($1, $1)", day);
        var ids = new List<Guid>();
        await using var connection = await OpenAsync();
        foreach (var status in statuses)
        {
            await using var cmd = new NpgsqlCommand("""
                WITH d AS (
                    INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at)
                    VALUES (webhook_uuid_v7_at($1, gen_random_uuid()), $2, 'email.received', gen_random_uuid(), '{}', $3, 2, 4, $1,
                            CASE WHEN $3 IN ('pending', 'retrying') THEN $1 END)
                    RETURNING id, created_at),
                a AS (
                    INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome)
                    SELECT d.id, n, d.created_at, 5, 500, 'http_status' FROM d, generate_series(1, 2) n)
                SELECT id FROM d
                """, connection);
            cmd.Parameters.Add(new NpgsqlParameter { Value = new DateTimeOffset(day.ToDateTime(new TimeOnly(12, 0)), TimeSpan.Zero) });
            cmd.Parameters.Add(new NpgsqlParameter { Value = subscriptionId });
            cmd.Parameters.Add(new NpgsqlParameter { Value = status });
            ids.Add((Guid)(await cmd.ExecuteScalarAsync())!);
        }
        return ids;
    }

    private static Task<long> CountAsync(IEnumerable<Guid> ids) =>
        ScalarAsync("SELECT count(*) FROM webhook_deliveries WHERE id = ANY ($1)", ids.ToArray());

    private static Task<long> CountAttemptsAsync(IEnumerable<Guid> ids) =>
        ScalarAsync("SELECT count(*) FROM webhook_delivery_attempts WHERE delivery_id = ANY ($1)", ids.ToArray());

    private static Task<long> TableExistsAsync(string name) => ScalarAsync("SELECT count(*) FROM pg_class WHERE relname = $1", name);

    [Test]
    public async Task An_expired_day_of_finished_deliveries_is_dropped_whole_with_its_attempts_and_recent_history_stays()
    {
        var subscription = (await Dispatcher.SubscribeAsync(Events.NewUser(), "https://hooks.example.com/r", ["email.received"])).Id;
        var today = DateOnly.FromDateTime(DateTime.UtcNow);
        var expiredDay = today.AddDays(-45);
        var expired = await StoreDayAsync(expiredDay, subscription, "success", "failed", "cancelled");
        var recent = await StoreDayAsync(today.AddDays(-29), subscription, "success", "failed");
        var suffix = expiredDay.ToString("yyyyMMdd");

        var result = await Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(result.Ran, Is.True);
            Assert.That(result.DaysDropped, Is.GreaterThanOrEqualTo(1));
            Assert.That(await TableExistsAsync("webhook_deliveries_" + suffix), Is.Zero);
            Assert.That(await TableExistsAsync("webhook_delivery_attempts_" + suffix), Is.Zero);
            Assert.That(await CountAsync(expired), Is.Zero);
            Assert.That(await CountAsync(recent), Is.EqualTo(2), "29 days old: kept");
            Assert.That(await CountAttemptsAsync(recent), Is.EqualTo(4));
        });
    }

    [Test]
    public async Task An_expired_day_with_a_pending_or_retrying_delivery_keeps_them_and_loses_only_its_finished_ones()
    {
        var subscription = (await Dispatcher.SubscribeAsync(Events.NewUser(), "https://hooks.example.com/r", ["email.received"])).Id;
        var day = DateOnly.FromDateTime(DateTime.UtcNow).AddDays(-44);
        var finished = await StoreDayAsync(day, subscription, "success", "failed", "cancelled", "success");
        var unfinished = await StoreDayAsync(day, subscription, "pending", "retrying");

        var result = await Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(result.RowsDeleted, Is.GreaterThanOrEqualTo(finished.Count * 3), "each finished delivery and its two attempts");
            Assert.That(await CountAsync(finished), Is.Zero);
            Assert.That(await CountAttemptsAsync(finished), Is.Zero);
            Assert.That(await CountAsync(unfinished), Is.EqualTo(2), "still reachable through webhook_deliveries: attached again");
            Assert.That(await CountAttemptsAsync(unfinished), Is.EqualTo(4));
        });

        // Once they finish, the next pass drops the day.
        await ScalarAsync("UPDATE webhook_deliveries SET status = 'success', next_retry_at = NULL WHERE id = ANY ($1)", unfinished.ToArray());
        await Retention.RunOnceAsync(CancellationToken.None);
        Assert.That(await TableExistsAsync("webhook_deliveries_" + day.ToString("yyyyMMdd")), Is.Zero);
    }

    [Test]
    public async Task A_pass_runs_once_across_replicas_the_others_skip_while_it_holds_the_lock()
    {
        var subscription = (await Dispatcher.SubscribeAsync(Events.NewUser(), "https://hooks.example.com/r", ["email.received"])).Id;
        var expired = await StoreDayAsync(DateOnly.FromDateTime(DateTime.UtcNow).AddDays(-43), subscription, "success");
        await using var other = await OpenAsync();
        await using (var take = new NpgsqlCommand("SELECT pg_advisory_lock($1)", other))
        {
            take.Parameters.Add(new NpgsqlParameter { Value = HistoryRetention.LockKey });
            await take.ExecuteNonQueryAsync(); // as if another replica's pass were running
        }

        var skipped = await Retention.RunOnceAsync(CancellationToken.None);
        Assert.Multiple(async () =>
        {
            Assert.That(skipped.Ran, Is.False);
            Assert.That(await CountAsync(expired), Is.EqualTo(1), "nothing removed by the skipped pass");
        });

        await using (var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", other))
            await release.ExecuteNonQueryAsync();
        Assert.That((await Retention.RunOnceAsync(CancellationToken.None)).Ran, Is.True);
        Assert.That(await CountAsync(expired), Is.Zero);
    }

    [Test]
    public async Task A_pass_makes_the_partitions_of_the_coming_days()
    {
        await Retention.RunOnceAsync(CancellationToken.None);
        var ahead = DateOnly.FromDateTime(DateTime.UtcNow).AddDays(14).ToString("yyyyMMdd");
        Assert.Multiple(async () =>
        {
            Assert.That(await TableExistsAsync("webhook_deliveries_" + ahead), Is.EqualTo(1));
            Assert.That(await TableExistsAsync("webhook_delivery_attempts_" + ahead), Is.EqualTo(1));
        });
    }
}
