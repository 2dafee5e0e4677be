using Microsoft.Extensions.Options;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// A migrated database of one test's own for the day-partitioned history, so a test can drop
/// partitions and hold locks without touching the run's database; with a retention pass and a
/// partition pass on it whose logs are kept and whose lock timeouts are 1 s.
/// </summary>
internal sealed class HistoryScratch : IAsyncDisposable
{
    private readonly ScratchDatabase _database;

    private HistoryScratch(ScratchDatabase database, TimeProvider time)
    {
        _database = database;
        DataSource = NpgsqlDataSource.Create(database.ConnectionString);
        Retention = new HistoryRetention(DataSource, Options.Create(new RetentionOptions { LockTimeoutSeconds = 1 }), time, RetentionLog);
        Partitions = new PartitionMaintenance(DataSource, Options.Create(new PartitionOptions { LockTimeoutSeconds = 1 }), time, PartitionLog);
    }

    public string ConnectionString => _database.ConnectionString;
    public NpgsqlDataSource DataSource { get; }
    public ListLogger<HistoryRetention> RetentionLog { get; } = new();
    public ListLogger<PartitionMaintenance> PartitionLog { get; } = new();
    public HistoryRetention Retention { get; }
    public PartitionMaintenance Partitions { get; }

    /// <summary>Creates and migrates the database; <paramref name="time"/> is the process clock the passes get (the real one by default).</summary>
    public static async Task<HistoryScratch> CreateAsync(TimeProvider? time = null) =>
        new(await ScratchDatabase.CreateAsync("history", migrate: true), time ?? TimeProvider.System);

    public async Task<T> ScalarAsync<T>(string sql, params object[] values)
    {
        await using var cmd = DataSource.CreateCommand(sql);
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        var result = await cmd.ExecuteScalarAsync();
        return result is DBNull or null ? default! : (T)result;
    }

    /// <summary>Today (UTC) by the database's clock.</summary>
    public Task<DateOnly> TodayAsync() => ScalarAsync<DateOnly>("SELECT (now() AT TIME ZONE 'UTC')::date");

    /// <summary>Stores a subscription; returns its id.</summary>
    public async Task<Guid> SubscribeAsync()
    {
        var id = Guid.NewGuid();
        await ScalarAsync<object>("""
            INSERT INTO webhook_subscriptions (id, user_id, url, event_types, secret, is_active, retry_count, timeout_seconds)
            VALUES ($1, 'history-user', 'https://hooks.example.com/h', '{email.received}', 'whsec_x', true, 3, 10)
            """, id);
        return id;
    }

    /// <summary>Makes the day's partitions and stores deliveries created that day (noon UTC) with the given statuses, two attempts each.</summary>
    public async Task<List<Guid>> StoreDayAsync(DateOnly day, Guid subscriptionId, params string[] statuses)
    {
        await ScalarAsync<int>("SELECT webhook_ensure_history_partitions($1, $1)", day);
        var ids = new List<Guid>();
        foreach (var status in statuses)
            ids.Add(await ScalarAsync<Guid>("""
                WITH d AS (
                    INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at)
                    VALUES (webhook_uuid_v7_at($1, gen_random_uuid()), $2, 'email.received', gen_random_uuid(), '{}', $3, 2, 4, $1,
                            CASE WHEN $3 IN ('pending', 'retrying') THEN $1 END)
                    RETURNING id, created_at),
                a AS (
                    INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome)
                    SELECT d.id, n, d.created_at, 5, 500, 'http_status' FROM d, generate_series(1, 2) n)
                SELECT id FROM d
                """, new DateTimeOffset(day.ToDateTime(new TimeOnly(12, 0)), TimeSpan.Zero), subscriptionId, status));
        return ids;
    }

    public Task<long> CountAsync(IEnumerable<Guid> ids) =>
        ScalarAsync<long>("SELECT count(*) FROM webhook_deliveries WHERE id = ANY ($1)", ids.ToArray());

    /// <summary>Whether a table of that name exists (attached or not).</summary>
    public async Task<bool> ExistsAsync(string table) => await ScalarAsync<long>("SELECT count(*) FROM pg_class WHERE relname = $1", table) == 1;

    /// <summary>Drops the partitions of <paramref name="days"/> (both tables).</summary>
    public async Task DropDaysAsync(params DateOnly[] days)
    {
        foreach (var day in days)
            await ScalarAsync<object>($"DROP TABLE webhook_deliveries_{day:yyyyMMdd}, webhook_delivery_attempts_{day:yyyyMMdd}, webhook_event_payloads_{day:yyyyMMdd}");
    }

    /// <summary>
    /// The attached, not detaching, partitions of <paramref name="parent"/>: name → bound as
    /// PostgreSQL prints it (<c>FOR VALUES FROM ('…') TO ('…')</c>).
    /// </summary>
    public async Task<Dictionary<string, string>> AttachedAsync(string parent)
    {
        await using var cmd = DataSource.CreateCommand("""
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = $1::regclass AND NOT i.inhdetachpending
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = parent });
        var partitions = new Dictionary<string, string>();
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync()) partitions[reader.GetString(0)] = reader.GetString(1);
        return partitions;
    }

    /// <summary>The bound a day's partitions must have: from the smallest id of the day to that of the next.</summary>
    public async Task<string> BoundOfAsync(DateOnly day) =>
        $"FOR VALUES FROM ('{await ScalarAsync<Guid>("SELECT webhook_history_bound($1)", day)}') TO ('{await ScalarAsync<Guid>("SELECT webhook_history_bound($1)", day.AddDays(1))}')";

    /// <summary>
    /// Opens a session and starts a transaction in it that runs <paramref name="sql"/> and then
    /// stays open (idle in transaction) until the returned connection is disposed.
    /// </summary>
    public async Task<NpgsqlConnection> HoldAsync(params string[] sql)
    {
        var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using (var begin = new NpgsqlCommand("BEGIN", connection)) await begin.ExecuteNonQueryAsync();
        foreach (var statement in sql)
        {
            await using var cmd = new NpgsqlCommand(statement, connection);
            await cmd.ExecuteNonQueryAsync();
        }
        return connection;
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        await _database.DisposeAsync();
    }
}
