using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>
/// Statements shared by the two maintenance steps of the day-partitioned history
/// (<see cref="PartitionMaintenance"/> and <see cref="HistoryRetention"/>) and the partition gauge.
/// </summary>
internal static class HistorySql
{
    /// <summary>A day as retention and partition logs write it: ISO 8601 (2026-11-02), whatever the host's culture.</summary>
    public static string Iso(DateOnly day) => day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Whole days after today (UTC, by the database's clock) for which all three day partitions exist
    /// and are attached (not being detached): 0 when only today's do, -1 when today's do not
    /// (new deliveries cannot be stored). Counts up to 400 days.
    /// </summary>
    public const string DaysAheadQuery = """
        SELECT coalesce((SELECT min(n) FROM generate_series(0, 400) n
                WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i
                                  WHERE i.inhrelid = to_regclass('webhook_deliveries_' || to_char(t.today + n, 'YYYYMMDD'))
                                    AND i.inhparent = 'webhook_deliveries'::regclass AND NOT i.inhdetachpending)
                   OR NOT EXISTS (SELECT 1 FROM pg_inherits i
                                  WHERE i.inhrelid = to_regclass('webhook_delivery_attempts_' || to_char(t.today + n, 'YYYYMMDD'))
                                    AND i.inhparent = 'webhook_delivery_attempts'::regclass AND NOT i.inhdetachpending)
                   OR NOT EXISTS (SELECT 1 FROM pg_inherits i
                                  WHERE i.inhrelid = to_regclass('webhook_event_payloads_' || to_char(t.today + n, 'YYYYMMDD'))
                                    AND i.inhparent = 'webhook_event_payloads'::regclass AND NOT i.inhdetachpending)
               ), 401) - 1
        FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t
        """;

    /// <summary>
    /// SQL states that mean "not now, try on the next pass": a lock not granted within
    /// <c>lock_timeout</c> (55P03), a deadlock (40P01), another session's concurrent detach still
    /// pending on the parent (55000), or another session that made the same partition first
    /// (42P07, or 23505 on a catalogue index when both created it at the same moment).
    /// </summary>
    public static bool IsPostponable(PostgresException exception) => exception.SqlState is
        PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.ObjectNotInPrerequisiteState
        or PostgresErrorCodes.DuplicateTable or PostgresErrorCodes.UniqueViolation;

    /// <summary>Runs <paramref name="sql"/> with positional parameters and returns its first column of its first row (default when null).</summary>
    public static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values)
    {
        await using var cmd = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        var result = await cmd.ExecuteScalarAsync(cancellationToken);
        return result is DBNull or null ? default! : (T)result;
    }

    /// <summary>
    /// Runs <paramref name="sql"/> with positional parameters, without a command timeout: the
    /// statements that wait for locks are bounded by the session's <c>lock_timeout</c> instead.
    /// </summary>
    public static async Task<int> ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params object[] values)
    {
        await using var cmd = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        return await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Who holds the session advisory lock <paramref name="key"/>, for a log line: "pid 123, idle in transaction since …", or "nobody" when it was just released.</summary>
    public static async Task<string> AdvisoryLockHolderAsync(NpgsqlConnection connection, long key, CancellationToken cancellationToken)
    {
        var holder = await ScalarAsync<string?>(connection, """
            SELECT format('pid %s (%s), %s since %s', a.pid, coalesce(nullif(a.application_name, ''), 'no application name'),
                          coalesce(a.state, 'unknown state'), coalesce(a.state_change, a.backend_start))
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint = ($1 >> 32) AND l.objid::bigint = ($1 & 4294967295) AND l.objsubid = 1
            LIMIT 1
            """, cancellationToken, key);
        return holder ?? "nobody";
    }
}
