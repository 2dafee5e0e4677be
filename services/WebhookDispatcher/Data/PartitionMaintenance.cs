using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>Settings of the day partitions made ahead for the delivery history (section <c>Partitions</c>).</summary>
public sealed class PartitionOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Partitions";

    /// <summary>
    /// Whole days after today (UTC) whose partitions are made before they are needed (2–90).
    /// Default 14: partition creation can fail for that long before a day has none and fan-outs fail.
    /// </summary>
    [Range(2, 90)]
    public int AheadDays { get; set; } = 14;

    /// <summary>Minutes between two passes (1–1440). Default 60; a pass also runs at start-up.</summary>
    [Range(1, 1440)]
    public int IntervalMinutes { get; set; } = 60;

    /// <summary>
    /// Seconds a pass waits for each lock it needs (1–300), its <c>lock_timeout</c>. Default 5.
    /// Attaching a partition takes a lock on <c>webhook_deliveries</c> that lets reads and writes
    /// go on, and one on <c>webhook_subscriptions</c> (for the partition's foreign key) that waits
    /// for, and while waiting holds back, transactions that change subscriptions: the wait is kept
    /// short, and a day whose partition could not be made is tried again on the next pass.
    /// </summary>
    [Range(1, 300)]
    public int LockTimeoutSeconds { get; set; } = 5;
}

/// <summary>What one partition pass did.</summary>
/// <param name="Today">Today (UTC) by the database's clock, which every decision of the pass used.</param>
/// <param name="PartitionsCreated">Tables made (a day's deliveries, attempts and payloads partitions each count).</param>
/// <param name="DaysPostponed">Days whose partitions were missing and could not be made now (a lock not granted in time, or another session making them); tried again on the next pass.</param>
/// <param name="DaysAhead">Whole days after <paramref name="Today"/> whose partitions exist after the pass; -1 when even today's are missing.</param>
public sealed record PartitionPass(DateOnly Today, int PartitionsCreated, IReadOnlyList<DateOnly> DaysPostponed, int DaysAhead);

/// <summary>
/// Makes the day partitions of <c>webhook_deliveries</c>, <c>webhook_delivery_attempts</c> and
/// <c>webhook_event_payloads</c> ahead of need (docs/decisions/0006): from yesterday to <see cref="PartitionOptions.AheadDays"/>
/// after today, by the database's clock, at start-up and every
/// <see cref="PartitionOptions.IntervalMinutes"/>. It shares no lock with
/// <see cref="HistoryRetention"/>, so a retention pass stuck behind a long transaction does not
/// stop it. Each missing day is made in its own short transaction with a <c>lock_timeout</c>
/// (<see cref="PartitionOptions.LockTimeoutSeconds"/>), after taking the lock that attaching a
/// partition takes anyway (<c>SHARE UPDATE EXCLUSIVE</c> on the parents: reads and writes go
/// on), which keeps replicas from making the same table at once; making a partition that exists
/// does nothing (<c>webhook_ensure_history_partitions</c> checks first), and a table another
/// session made first (an older replica whose retention still makes partitions) only postpones
/// the day, so passes of several replicas, or a retry, are harmless.
/// </summary>
/// <param name="db">The service's data source.</param>
/// <param name="options">The settings.</param>
/// <param name="time">Only the waits between passes; what day it is comes from the database's <c>now()</c>.</param>
/// <param name="logger">Where passes that made or could not make partitions are logged.</param>
public sealed partial class PartitionMaintenance(
    NpgsqlDataSource db, IOptions<PartitionOptions> options, TimeProvider time, ILogger<PartitionMaintenance> logger) : BackgroundService
{
    /// <summary>Wait after a pass that failed or postponed a day, when shorter than the interval.</summary>
    private static readonly TimeSpan RetryAfter = TimeSpan.FromMinutes(5);

    /// <summary>Runs one pass now: makes the missing partitions from yesterday to <see cref="PartitionOptions.AheadDays"/> after today.</summary>
    /// <exception cref="NpgsqlException">The database failed for a reason other than a lock; the pass may be repeated safely.</exception>
    public async Task<PartitionPass> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        // Yesterday too: a delivery id is made by the database when the row is inserted, but a
        // day's partition must exist before its first millisecond, whatever the clock of whoever asks.
        var missing = new List<DateOnly>();
        DateOnly today = default;
        await using (var cmd = new NpgsqlCommand("""
            SELECT t.today, d.day FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t
            LEFT JOIN LATERAL (SELECT t.today + n AS day FROM generate_series(-1, $1) n) d
              ON to_regclass('webhook_deliveries_' || to_char(d.day, 'YYYYMMDD')) IS NULL
              OR to_regclass('webhook_delivery_attempts_' || to_char(d.day, 'YYYYMMDD')) IS NULL
              OR to_regclass('webhook_event_payloads_' || to_char(d.day, 'YYYYMMDD')) IS NULL
            ORDER BY d.day
            """, connection))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = o.AheadDays });
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                today = reader.GetFieldValue<DateOnly>(0);
                if (!reader.IsDBNull(1)) missing.Add(reader.GetFieldValue<DateOnly>(1));
            }
        }

        var created = 0;
        var postponed = new List<DateOnly>();
        foreach (var day in missing)
        {
            try
            {
                created += await MakeDayAsync(connection, day, o.LockTimeoutSeconds, cancellationToken);
            }
            catch (PostgresException ex) when (HistorySql.IsPostponable(ex))
            {
                postponed.Add(day);
                LogPostponed(logger, HistorySql.Iso(day), ex.SqlState, ex.MessageText);
            }
        }

        var ahead = await HistorySql.ScalarAsync<int>(connection, HistorySql.DaysAheadQuery, cancellationToken);
        if (created > 0) LogMade(logger, created, ahead, HistorySql.Iso(today));
        return new PartitionPass(today, created, postponed, ahead);
    }

    /// <summary>Makes one day's three partitions in one transaction; returns how many tables it made.</summary>
    private static async Task<int> MakeDayAsync(NpgsqlConnection connection, DateOnly day, int lockTimeoutSeconds, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // SET LOCAL takes no parameters; the value is an integer from validated settings.
        await HistorySql.ExecuteAsync(connection, $"SET LOCAL lock_timeout = '{lockTimeoutSeconds}s'", cancellationToken);
        // The lock ATTACH takes anyway (reads and writes go on), taken first: two passes (two
        // replicas) make a day one after the other, and taking a table lock makes the function
        // below see tables another pass committed meanwhile (a wait on a lock of no table, such
        // as an advisory lock, leaves this session's catalogue cache as it was before the wait).
        await HistorySql.ExecuteAsync(connection,
            "LOCK TABLE webhook_deliveries, webhook_delivery_attempts, webhook_event_payloads IN SHARE UPDATE EXCLUSIVE MODE", cancellationToken);
        var made = await HistorySql.ScalarAsync<int>(connection, "SELECT webhook_ensure_history_partitions($1, $1)", cancellationToken, day);
        await transaction.CommitAsync(cancellationToken);
        return made;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var every = TimeSpan.FromMinutes(options.Value.IntervalMinutes);
        var again = every < RetryAfter ? every : RetryAfter;
        // The first pass runs at once: start-up (migrations) has finished before hosted loops start.
        var wait = TimeSpan.Zero;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (wait > TimeSpan.Zero) await Task.Delay(wait, time, stoppingToken);
                var pass = await RunOnceAsync(stoppingToken);
                wait = pass.DaysPostponed.Count > 0 ? again : every;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                BrokenConnections.ClearIfBroken(db, ex);
                LogPassFailed(logger, ex, again.TotalMinutes);
                wait = again;
            }
        }
    }

    [LoggerMessage(LogLevel.Information, "History partitions: made {Created} table(s); partitions now reach {DaysAhead} day(s) past {Today}")]
    private static partial void LogMade(ILogger logger, int created, int daysAhead, string today);

    [LoggerMessage(LogLevel.Warning, "History partitions of {Day} not made on this pass ({SqlState}: {Reason}); trying again on the next pass")]
    private static partial void LogPostponed(ILogger logger, string day, string sqlState, string reason);

    [LoggerMessage(LogLevel.Error, "History partition pass failed; trying again in {Minutes} minute(s)")]
    private static partial void LogPassFailed(ILogger logger, Exception ex, double minutes);
}
