using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// History retention: expired days of deliveries and attempts go, whole or row by row, and nothing
/// unfinished or recent is touched (on the run's database); a pass never waits for ever behind a
/// long transaction, and what is expired is decided by the database's clock (on databases of
/// their own). Not parallel: a pass detaches partitions, which waits for every open transaction on
/// the tables.
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
    public async Task A_days_payloads_are_kept_while_that_day_or_the_next_keeps_deliveries_and_dropped_after()
    {
        // A payload row is made just before its deliveries, so at midnight a payload can land in
        // one day and its deliveries in the next: a day's payloads go only once both days' deliveries are gone.
        var subscription = (await Dispatcher.SubscribeAsync(Events.NewUser(), "https://hooks.example.com/r", ["email.received"])).Id;
        var day = DateOnly.FromDateTime(DateTime.UtcNow).AddDays(-48);
        await StoreDayAsync(day, subscription, "success");
        var nextDay = await StoreDayAsync(day.AddDays(1), subscription, "pending");
        var at = new DateTimeOffset(day.ToDateTime(new TimeOnly(23, 59, 59)), TimeSpan.Zero);
        var payload = await ScalarAsync("""
            WITH p AS (INSERT INTO webhook_event_payloads (id, event_id, payload)
                       VALUES (webhook_uuid_v7_at($1, gen_random_uuid()), gen_random_uuid(), '{}') RETURNING id)
            SELECT count(*) FROM p
            """, at);
        var payloads = "webhook_event_payloads_" + day.ToString("yyyyMMdd");

        await Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(payload, Is.EqualTo(1));
            Assert.That(await TableExistsAsync("webhook_deliveries_" + day.ToString("yyyyMMdd")), Is.Zero, "the day's deliveries are gone");
            Assert.That(await CountAsync(nextDay), Is.EqualTo(1), "the next day keeps its pending delivery");
            Assert.That(await TableExistsAsync(payloads), Is.EqualTo(1), "so the day's payloads stay");
        });

        await ScalarAsync("UPDATE webhook_deliveries SET status = 'success', next_retry_at = NULL WHERE id = ANY ($1)", nextDay.ToArray());
        await Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(await TableExistsAsync("webhook_deliveries_" + day.AddDays(1).ToString("yyyyMMdd")), Is.Zero);
            Assert.That(await TableExistsAsync(payloads), Is.Zero, "both days' deliveries gone: the payloads go");
        });
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
    public async Task A_detach_behind_a_long_transaction_gives_up_within_its_lock_timeout_and_a_later_pass_finishes_it()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        var subscription = await history.SubscribeAsync();
        var first = await history.StoreDayAsync(today.AddDays(-46), subscription, "success", "failed");
        var second = await history.StoreDayAsync(today.AddDays(-45), subscription, "success");

        RetentionResult blocked;
        // A session idle in a transaction that has read the history: a detach must wait for it to end.
        await using (var blocker = await history.HoldAsync("SELECT count(*) FROM webhook_deliveries"))
        {
            // Without a lock timeout this pass would wait as long as the session stays open.
            blocked = await history.Retention.RunOnceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2));
            Assert.That(await history.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction'",
                blocker.ProcessID), Is.EqualTo(1), "the pass came back while the session was still open");
        }
        var after = await history.Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(blocked.Ran, Is.True);
            Assert.That(blocked.DaysDropped, Is.Zero);
            Assert.That(blocked.DaysPostponed, Is.EqualTo(new[] { today.AddDays(-46), today.AddDays(-45) }),
                "the first day's detach timed out waiting; the second cannot start while the first is pending");
            Assert.That(history.RetentionLog.At(LogLevel.Warning), Has.Some.Contains($"postponed day {today.AddDays(-46):yyyy-MM-dd}").And.Contains("55P03"));
            Assert.That(after.DaysDropped, Is.EqualTo(2), "the next pass finishes the pending detach and drops both days");
            Assert.That(after.DaysPostponed, Is.Empty);
            Assert.That(await history.ExistsAsync($"webhook_deliveries_{today.AddDays(-46):yyyyMMdd}"), Is.False);
            Assert.That(await history.ExistsAsync($"webhook_delivery_attempts_{today.AddDays(-45):yyyyMMdd}"), Is.False);
            Assert.That(await history.CountAsync([.. first, .. second]), Is.Zero);
        });
    }

    [Test]
    public async Task A_day_that_cannot_get_its_lock_is_postponed_and_the_pass_goes_on_with_the_other_days()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        var subscription = await history.SubscribeAsync();
        var locked = await history.StoreDayAsync(today.AddDays(-46), subscription, "success");
        var free = await history.StoreDayAsync(today.AddDays(-45), subscription, "success");

        RetentionResult pass;
        await using (await history.HoldAsync($"LOCK TABLE webhook_deliveries_{today.AddDays(-46):yyyyMMdd} IN SHARE MODE"))
            pass = await history.Retention.RunOnceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Multiple(async () =>
        {
            Assert.That(pass.DaysPostponed, Is.EqualTo(new[] { today.AddDays(-46) }));
            Assert.That(pass.DaysDropped, Is.EqualTo(1));
            Assert.That(history.RetentionLog.At(LogLevel.Warning), Has.One.Contains($"postponed day {today.AddDays(-46):yyyy-MM-dd}").And.Contains("55P03"));
            Assert.That(await history.CountAsync(locked), Is.EqualTo(1), "the locked day is still there, attached");
            Assert.That(await history.CountAsync(free), Is.Zero);
            Assert.That(await history.ExistsAsync($"webhook_deliveries_{today.AddDays(-45):yyyyMMdd}"), Is.False);
        });
    }

    [Test]
    public async Task A_process_clock_far_ahead_drops_no_history()
    {
        // 60 days ahead: by the process's clock every stored day would be expired.
        await using var history = await HistoryScratch.CreateAsync(new PartitionTests.ClockAhead(TimeSpan.FromDays(60)));
        var today = await history.TodayAsync();
        var subscription = await history.SubscribeAsync();
        var recent = await history.StoreDayAsync(today.AddDays(-1), subscription, "success", "failed");
        var older = await history.StoreDayAsync(today.AddDays(-29), subscription, "success", "cancelled");
        var expired = await history.StoreDayAsync(today.AddDays(-31), subscription, "success");

        var pass = await history.Retention.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(pass.Ran, Is.True);
            Assert.That(pass.DaysDropped, Is.EqualTo(1), "only the day expired by the database's clock");
            Assert.That(await history.CountAsync(recent), Is.EqualTo(2));
            Assert.That(await history.CountAsync(older), Is.EqualTo(2));
            Assert.That(await history.CountAsync(expired), Is.Zero);
            Assert.That(await history.ExistsAsync($"webhook_deliveries_{today:yyyyMMdd}"), Is.True, "today's partitions stay");
        });
    }
}
