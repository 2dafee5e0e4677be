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

    /// <summary>Days ahead for which day partitions exist before they are needed (2–90). Default 14.</summary>
    [Range(2, 90)]
    public int PartitionsAheadDays { get; set; } = 14;
}

/// <summary>What one retention pass did.</summary>
/// <param name="Ran">False when another replica held the pass's lock, so this one did nothing.</param>
/// <param name="PartitionsCreated">Day partitions made ahead (deliveries and attempts each count).</param>
/// <param name="DaysDropped">Expired days whose partitions were dropped whole.</param>
/// <param name="RowsDeleted">Deliveries and attempts deleted one by one from expired days that still hold unfinished deliveries.</param>
public sealed record RetentionResult(bool Ran, int PartitionsCreated, int DaysDropped, long RowsDeleted);

/// <summary>
/// Keeps <see cref="RetentionOptions.Days"/> of delivery history. Deliveries and their attempts
/// live in day partitions (the PartitionedHistory migration, docs/decisions/0006): a pass makes
/// the partitions of the coming days, and drops each expired day whole — detached first without
/// blocking the delivery path (<c>DETACH PARTITION … CONCURRENTLY</c>), then checked: a day that
/// still holds a pending or retrying delivery (a manual retry of an old one, say) is attached
/// again, and only its finished deliveries and their attempts are deleted. One pass at a time
/// across replicas (a PostgreSQL advisory lock); the others skip.
/// </summary>
public sealed partial class HistoryRetention(
    NpgsqlDataSource db, IOptions<RetentionOptions> options, TimeProvider time, ILogger<HistoryRetention> logger) : BackgroundService
{
    /// <summary>The advisory lock a pass holds, so one pass at a time runs across replicas.</summary>
    internal const long LockKey = 0x5745_4248_4f4f_4b53; // "WEBHOOKS"
    private const int DeleteBatch = 10_000;

    /// <summary>Runs one pass now.</summary>
    /// <exception cref="NpgsqlException">The database failed; the pass may be repeated safely.</exception>
    public async Task<RetentionResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var now = time.GetUtcNow();
        var today = DateOnly.FromDateTime(now.UtcDateTime);
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        if (!await ScalarAsync<bool>(connection, "SELECT pg_try_advisory_lock($1)", cancellationToken, LockKey))
            return new RetentionResult(false, 0, 0, 0);
        try
        {
            var created = await ScalarAsync<int>(connection, "SELECT webhook_ensure_history_partitions($1, $2)", cancellationToken,
                today.AddDays(-1), today.AddDays(o.PartitionsAheadDays));
            // A day is expired once its last moment is more than Days old.
            var cutoff = now - TimeSpan.FromDays(o.Days);
            var expired = (await HistoryDaysAsync(connection, cancellationToken))
                .Where(day => day.AddDays(1).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc) <= cutoff.UtcDateTime).ToList();
            int dropped = 0;
            long deleted = 0;
            foreach (var day in expired)
            {
                var rows = await RemoveDayAsync(connection, day, cancellationToken);
                if (rows is null) dropped++;
                else deleted += rows.Value;
            }
            if (created > 0 || expired.Count > 0)
                LogPass(logger, created, dropped, deleted, o.Days);
            return new RetentionResult(true, created, dropped, deleted);
        }
        finally
        {
            await ExecuteAsync(connection, "SELECT pg_advisory_unlock_all()", CancellationToken.None);
        }
    }

    /// <summary>Drops the day's two partitions; returns null when it did, else the rows deleted from a day that still holds unfinished deliveries.</summary>
    private async Task<long?> RemoveDayAsync(NpgsqlConnection connection, DateOnly day, CancellationToken cancellationToken)
    {
        var suffix = day.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
        var deliveries = "webhook_deliveries_" + suffix;
        var attempts = "webhook_delivery_attempts_" + suffix;

        await DetachAsync(connection, "webhook_deliveries", deliveries, cancellationToken);
        // Detached: no statement through webhook_deliveries can touch its rows any more, so what
        // this check sees stays true.
        if (await ScalarAsync<bool>(connection, $"SELECT EXISTS (SELECT 1 FROM {deliveries} WHERE status IN ('pending', 'retrying'))",
                cancellationToken))
        {
            // DDL takes no parameters: the bounds are read first and written in as literals.
            var from = await ScalarAsync<Guid>(connection, "SELECT webhook_history_bound($1)", cancellationToken, day);
            var to = await ScalarAsync<Guid>(connection, "SELECT webhook_history_bound($1)", cancellationToken, day.AddDays(1));
            await ExecuteAsync(connection,
                $"ALTER TABLE webhook_deliveries ATTACH PARTITION {deliveries} FOR VALUES FROM ('{from}') TO ('{to}')", cancellationToken);
            long rows = 0;
            while (true)
            {
                var (gone, attemptsGone) = await DeleteFinishedAsync(connection, deliveries, attempts, cancellationToken);
                rows += gone + attemptsGone;
                if (gone == 0) break;
            }
            LogKeptDay(logger, day, rows);
            return rows;
        }

        await DetachAsync(connection, "webhook_delivery_attempts", attempts, cancellationToken);
        await ExecuteAsync(connection, $"DROP TABLE IF EXISTS {attempts}", cancellationToken);
        await ExecuteAsync(connection, $"DROP TABLE {deliveries}", cancellationToken);
        return null;
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

    /// <summary>The days that have a deliveries table, attached or left standalone by an interrupted pass.</summary>
    private static async Task<List<DateOnly>> HistoryDaysAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT substring(relname FROM '^webhook_deliveries_([0-9]{8})$') FROM pg_class
            WHERE relkind = 'r' AND relname ~ '^webhook_deliveries_[0-9]{8}$' AND relnamespace = 'public'::regnamespace
            """, connection);
        var days = new List<DateOnly>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            days.Add(DateOnly.ParseExact(reader.GetString(0), "yyyyMMdd", CultureInfo.InvariantCulture));
        days.Sort();
        return days;
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values)
    {
        await using var cmd = new NpgsqlCommand(sql, connection);
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        var result = await cmd.ExecuteScalarAsync(cancellationToken);
        return result is DBNull or null ? default! : (T)result;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values)
    {
        await using var cmd = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        return await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

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
                await RunOnceAsync(stoppingToken);
                wait = every;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                BrokenConnections.ClearIfBroken(db, ex);
                LogPassFailed(logger, ex);
                wait = TimeSpan.FromMinutes(5);
            }
        }
    }

    [LoggerMessage(LogLevel.Information, "History retention: {Created} partition(s) made ahead, {Dropped} expired day(s) dropped, {Deleted} row(s) deleted; keeping {Days} days")]
    private static partial void LogPass(ILogger logger, int created, int dropped, long deleted, int days);

    [LoggerMessage(LogLevel.Warning, "History retention kept day {Day}: it still holds unfinished deliveries; deleted its {Rows} finished row(s) instead")]
    private static partial void LogKeptDay(ILogger logger, DateOnly day, long rows);

    [LoggerMessage(LogLevel.Error, "History retention pass failed; trying again in 5 minutes")]
    private static partial void LogPassFailed(ILogger logger, Exception ex);
}
