using System.ComponentModel.DataAnnotations;
using System.Globalization;
using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>Settings of the delivery history's retention (section <c>Retention</c>).</summary>
public sealed class RetentionOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Retention";

    /// <summary>
    /// Days of delivery history kept (1–3650). Default 30. History goes by whole UTC days, so a
    /// delivery is removed between <see cref="Days"/> and <see cref="Days"/> + 1 days after it was
    /// created; unfinished deliveries are never removed.
    /// </summary>
    [Range(1, 3650)]
    public int Days { get; set; } = 30;

    /// <summary>Hours between two passes (1–168). Default 24; a pass also runs at start-up.</summary>
    [Range(1, 168)]
    public int IntervalHours { get; set; } = 24;

    /// <summary>
    /// Seconds a pass waits for each lock it needs (1–300), its <c>lock_timeout</c>. Default 5.
    /// Detaching a day waits for every transaction that has read or written the history tables
    /// to finish, and dropping or attaching one waits for transactions that changed
    /// subscriptions; an idle-in-transaction session would hold such a wait for ever. A day whose
    /// lock is not granted in time is left for a pass 5 minutes later, and the pass goes on with
    /// the other days.
    /// </summary>
    [Range(1, 300)]
    public int LockTimeoutSeconds { get; set; } = 5;
}

/// <summary>What one retention pass did.</summary>
/// <param name="Ran">False when another session held the pass's lock (another replica's pass), so this one did nothing.</param>
/// <param name="DaysDropped">Expired days whose partitions were dropped whole.</param>
/// <param name="RowsDeleted">Deliveries and attempts deleted one by one from expired days that still hold unfinished deliveries.</param>
/// <param name="DaysPostponed">Expired days left for a later pass: a lock not granted within <see cref="RetentionOptions.LockTimeoutSeconds"/>, or another day's detach still pending.</param>
public sealed record RetentionResult(bool Ran, int DaysDropped, long RowsDeleted, IReadOnlyList<DateOnly> DaysPostponed);

/// <summary>
/// Keeps <see cref="RetentionOptions.Days"/> of delivery history. Deliveries, their attempts and
/// the payloads stored once per event live in day partitions (the PartitionedHistory migration,
/// docs/decisions/0006 and 0009), made ahead by <see cref="PartitionMaintenance"/>; a pass drops
/// each expired day whole — detached first without blocking the delivery path (<c>DETACH
/// PARTITION … CONCURRENTLY</c>), then checked: a day that still holds a pending or retrying
/// delivery (a manual retry of an old one, say) is attached again, and only its finished
/// deliveries and their attempts are deleted; a day seen to hold one before the detach is not
/// detached at all. A day of payloads goes once neither that day's deliveries nor the next day's
/// are left (a payload is made just before its deliveries, so at midnight they can fall on two
/// days). What is expired is decided by the
/// database's clock (<c>now()</c>), never the process's. Every statement waits at most
/// <see cref="RetentionOptions.LockTimeoutSeconds"/> for a lock: a day that cannot be handled
/// now is logged and left for the next pass, which comes 5 minutes later. One pass at a time
/// across replicas (a PostgreSQL advisory lock); the others skip, with a warning naming the
/// session that holds it.
/// </summary>
/// <param name="db">The service's data source.</param>
/// <param name="options">The settings.</param>
/// <param name="time">Only the waits between passes (tests fake it); what has expired comes from the database's <c>now()</c>.</param>
/// <param name="logger">Where passes, skipped passes and postponed days are logged.</param>
public sealed partial class HistoryRetention(
    NpgsqlDataSource db, IOptions<RetentionOptions> options, TimeProvider time, ILogger<HistoryRetention> logger) : BackgroundService
{
    /// <summary>The advisory lock a pass holds, so one pass at a time runs across replicas.</summary>
    internal const long LockKey = 0x5745_4248_4f4f_4b53; // "WEBHOOKS"
    private const int DeleteBatch = 10_000;

    /// <summary>Wait after a pass that failed or postponed a day, when shorter than the interval.</summary>
    private static readonly TimeSpan RetryAfter = TimeSpan.FromMinutes(5);

    /// <summary>Runs one pass now.</summary>
    /// <exception cref="NpgsqlException">The database failed for a reason other than a lock; the pass may be repeated safely.</exception>
    public async Task<RetentionResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        if (!await ScalarAsync<bool>(connection, "SELECT pg_try_advisory_lock($1)", cancellationToken, LockKey))
        {
            LogSkipped(logger, await HistorySql.AdvisoryLockHolderAsync(connection, LockKey, cancellationToken));
            return new RetentionResult(false, 0, 0, []);
        }
        try
        {
            // Session-wide, not SET LOCAL: DETACH … CONCURRENTLY cannot run inside a transaction.
            // The value is an integer from validated settings (SET takes no parameters).
            await ExecuteAsync(connection, $"SET lock_timeout = '{o.LockTimeoutSeconds}s'", cancellationToken);
            // A day is expired once its last moment is more than Days old, by the database's clock.
            var cutoff = await ScalarAsync<DateTime>(connection, "SELECT now() - make_interval(days => $1)", cancellationToken, o.Days);
            bool Expired(DateOnly day) => day.AddDays(1).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc) <= cutoff;
            var expired = (await HistoryDaysAsync(connection, "webhook_deliveries", cancellationToken)).Where(Expired).ToList();
            int dropped = 0;
            long deleted = 0;
            var postponed = new List<DateOnly>();
            foreach (var day in expired)
            {
                try
                {
                    var rows = await RemoveDayAsync(connection, day, cancellationToken);
                    if (rows is null) dropped++;
                    else deleted += rows.Value;
                }
                catch (PostgresException ex) when (HistorySql.IsPostponable(ex))
                {
                    postponed.Add(day);
                    LogPostponed(logger, HistorySql.Iso(day), ex.SqlState, ex.MessageText);
                }
            }
            if (expired.Count > 0)
                LogPass(logger, dropped, deleted, postponed.Count, o.Days);

            // A day's payloads go once neither that day's deliveries nor the next day's are left:
            // a payload row is made just before its deliveries, so a fan-out at midnight can
            // store a payload in one day and its deliveries in the next.
            var deliveryDays = (await HistoryDaysAsync(connection, "webhook_deliveries", cancellationToken)).ToHashSet();
            foreach (var day in (await HistoryDaysAsync(connection, "webhook_event_payloads", cancellationToken)).Where(Expired))
            {
                if (deliveryDays.Contains(day) || deliveryDays.Contains(day.AddDays(1))) continue;
                var payloads = "webhook_event_payloads_" + day.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
                try
                {
                    await DetachAsync(connection, "webhook_event_payloads", payloads, cancellationToken);
                    await ExecuteAsync(connection, $"DROP TABLE IF EXISTS {payloads}", cancellationToken);
                }
                catch (PostgresException ex) when (HistorySql.IsPostponable(ex))
                {
                    LogPostponed(logger, HistorySql.Iso(day), ex.SqlState, ex.MessageText);
                }
            }
            return new RetentionResult(true, dropped, deleted, postponed);
        }
        finally
        {
            await ExecuteAsync(connection, "RESET lock_timeout", CancellationToken.None);
            await ExecuteAsync(connection, "SELECT pg_advisory_unlock_all()", CancellationToken.None);
        }
    }

    /// <summary>Drops the day's two partitions; returns null when it did, else the rows deleted from a day that still holds unfinished deliveries.</summary>
    private async Task<long?> RemoveDayAsync(NpgsqlConnection connection, DateOnly day, CancellationToken cancellationToken)
    {
        var suffix = day.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
        var deliveries = "webhook_deliveries_" + suffix;
        var attempts = "webhook_delivery_attempts_" + suffix;

        // Attached and already holding an unfinished delivery: kept, so not detached at all.
        var attached = await ScalarAsync<bool>(connection, """
            SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND NOT inhdetachpending)
            """, cancellationToken, deliveries);
        if (attached && await HoldsUnfinishedAsync(connection, deliveries, cancellationToken))
            return await DeleteFinishedDayAsync(connection, day, deliveries, attempts, cancellationToken);

        await DetachAsync(connection, "webhook_deliveries", deliveries, cancellationToken);
        // Detached: no statement through webhook_deliveries can touch its rows any more, so what
        // this check sees stays true.
        if (await HoldsUnfinishedAsync(connection, deliveries, cancellationToken))
        {
            // DDL takes no parameters: the bounds are read first and written in as literals.
            var from = await ScalarAsync<Guid>(connection, "SELECT webhook_history_bound($1)", cancellationToken, day);
            var to = await ScalarAsync<Guid>(connection, "SELECT webhook_history_bound($1)", cancellationToken, day.AddDays(1));
            await ExecuteAsync(connection,
                $"ALTER TABLE webhook_deliveries ATTACH PARTITION {deliveries} FOR VALUES FROM ('{from}') TO ('{to}')", cancellationToken);
            return await DeleteFinishedDayAsync(connection, day, deliveries, attempts, cancellationToken);
        }

        await DetachAsync(connection, "webhook_delivery_attempts", attempts, cancellationToken);
        await ExecuteAsync(connection, $"DROP TABLE IF EXISTS {attempts}", cancellationToken);
        await ExecuteAsync(connection, $"DROP TABLE {deliveries}", cancellationToken);
        return null;
    }

    private static Task<bool> HoldsUnfinishedAsync(NpgsqlConnection connection, string deliveries, CancellationToken cancellationToken) =>
        ScalarAsync<bool>(connection, $"SELECT EXISTS (SELECT 1 FROM {deliveries} WHERE status IN ('pending', 'retrying', 'batched'))", cancellationToken);

    /// <summary>Deletes a kept day's finished deliveries and their attempts in batches; returns the rows deleted.</summary>
    private async Task<long> DeleteFinishedDayAsync(NpgsqlConnection connection, DateOnly day, string deliveries, string attempts,
        CancellationToken cancellationToken)
    {
        long rows = 0;
        while (true)
        {
            var (gone, attemptsGone) = await DeleteFinishedAsync(connection, deliveries, attempts, cancellationToken);
            rows += gone + attemptsGone;
            if (gone == 0) break;
        }
        LogKeptDay(logger, HistorySql.Iso(day), rows);
        return rows;
    }

    /// <summary>Deletes up to <see cref="DeleteBatch"/> finished deliveries of a day and their attempts, in one statement.</summary>
    private static async Task<(long Deliveries, long Attempts)> DeleteFinishedAsync(NpgsqlConnection connection, string deliveries, string attempts,
        CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand($"""
            WITH gone AS (
                DELETE FROM {deliveries} WHERE id IN (
                    SELECT id FROM {deliveries} WHERE status IN ('success', 'failed', 'cancelled') LIMIT {DeleteBatch})
                RETURNING id),
            attempts AS (
                DELETE FROM {attempts} a USING gone WHERE a.delivery_id = gone.id RETURNING 1)
            SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attempts)
            """, connection) { CommandTimeout = 0 };
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>
    /// Detaches <paramref name="partition"/> from <paramref name="parent"/> without blocking
    /// reads and writes of the parent; finishes a detach a crash left pending; nothing when the
    /// table is already standalone (or gone).
    /// </summary>
    private static async Task DetachAsync(NpgsqlConnection connection, string parent, string partition, CancellationToken cancellationToken)
    {
        var pending = await ScalarAsync<bool?>(connection, """
            SELECT i.inhdetachpending FROM pg_inherits i
            WHERE i.inhparent = $1::regclass AND i.inhrelid = to_regclass($2)
            """, cancellationToken, parent, partition);
        if (pending is null) return;
        await ExecuteAsync(connection, pending.Value
            ? $"ALTER TABLE {parent} DETACH PARTITION {partition} FINALIZE"
            : $"ALTER TABLE {parent} DETACH PARTITION {partition} CONCURRENTLY", cancellationToken);
    }

    /// <summary>The days that have a table of <paramref name="parent"/> (a day partition), attached or left standalone by an interrupted pass.</summary>
    private static async Task<List<DateOnly>> HistoryDaysAsync(NpgsqlConnection connection, string parent, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT substring(relname FROM '_([0-9]{8})$') FROM pg_class
            WHERE relkind = 'r' AND relname ~ ('^' || $1 || '_[0-9]{8}$') AND relnamespace = 'public'::regnamespace
            """, connection);
        cmd.Parameters.Add(new NpgsqlParameter { Value = parent });
        var days = new List<DateOnly>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            days.Add(DateOnly.ParseExact(reader.GetString(0), "yyyyMMdd", CultureInfo.InvariantCulture));
        days.Sort();
        return days;
    }

    private static Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values) =>
        HistorySql.ScalarAsync<T>(connection, sql, cancellationToken, values);

    private static Task<int> ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values) =>
        HistorySql.ExecuteAsync(connection, sql, cancellationToken, values);

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var every = TimeSpan.FromHours(options.Value.IntervalHours);
        var wait = TimeSpan.FromSeconds(5); // let the service start first
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(wait, time, stoppingToken);
                var pass = await RunOnceAsync(stoppingToken);
                wait = pass.DaysPostponed.Count > 0 ? RetryAfter : every;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                BrokenConnections.ClearIfBroken(db, ex);
                LogPassFailed(logger, ex);
                wait = RetryAfter;
            }
        }
    }

    [LoggerMessage(LogLevel.Information, "History retention: {Dropped} expired day(s) dropped, {Deleted} row(s) deleted, {Postponed} day(s) postponed; keeping {Days} days")]
    private static partial void LogPass(ILogger logger, int dropped, long deleted, int postponed, int days);

    [LoggerMessage(LogLevel.Warning, "History retention pass skipped: another session holds its lock ({Holder})")]
    private static partial void LogSkipped(ILogger logger, string holder);

    [LoggerMessage(LogLevel.Warning, "History retention postponed day {Day} ({SqlState}: {Reason}); trying again in 5 minutes")]
    private static partial void LogPostponed(ILogger logger, string day, string sqlState, string reason);

    [LoggerMessage(LogLevel.Warning, "History retention kept day {Day}: it still holds unfinished deliveries; deleted its {Rows} finished row(s) instead")]
    private static partial void LogKeptDay(ILogger logger, string day, long rows);

    [LoggerMessage(LogLevel.Error, "History retention pass failed; trying again in 5 minutes")]
    private static partial void LogPassFailed(ILogger logger, Exception ex);
}
