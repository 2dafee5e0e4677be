using Npgsql;

namespace WebhookDispatcher.LoadTest;

/// <summary>Old delivery history made directly in PostgreSQL, for the retention benchmark.</summary>
internal static class HistoryData
{
    public static async Task<Guid> SubscriptionOfAsync(NpgsqlDataSource db, string user)
    {
        await using var cmd = db.CreateCommand("SELECT id FROM webhook_subscriptions WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = user });
        return (Guid)(await cmd.ExecuteScalarAsync())!;
    }

    /// <summary>Finished deliveries with two attempts each, <paramref name="perDay"/> a day on <paramref name="days"/> days ending 37 days ago.</summary>
    public static async Task<(long Deliveries, long Attempts)> GenerateExpiredAsync(NpgsqlDataSource db, Guid subscription, int days, int perDay, DateOnly today)
    {
        long deliveries = 0, attempts = 0;
        for (var i = 0; i < days; i++)
        {
            var day = today.AddDays(-37 - i);
            await using (var partitions = db.CreateCommand("SELECT webhook_ensure_history_partitions($1, $1)"))
            {
                partitions.Parameters.Add(new NpgsqlParameter { Value = day });
                await partitions.ExecuteNonQueryAsync();
            }
            await using var cmd = db.CreateCommand("""
                WITH d AS (
                    INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                                    response_status_code, created_at, first_attempt_at, last_attempt_at, completed_at)
                    SELECT webhook_uuid_v7_at(t, gen_random_uuid()), $1, 'email.received', gen_random_uuid(),
                           '{"id":"00000000-0000-0000-0000-000000000000","event_type":"email.received","created_at":"2026-10-20T12:00:00.000Z","data":{"email_id":"em_0000","subject":"Quarterly report","from":"alice@example.com","to":["bob@example.com"],"date":"2026-10-20T12:00:00.000Z","body_preview":"Hi Bob, attached is the draft of the quarterly report."}}',
                           'success', 2, 4, 200, t, t, t, t
                    FROM (SELECT $2::timestamptz + g * interval '1 ms' * (86400000 / $3) AS t FROM generate_series(0, $3 - 1) g) s
                    RETURNING id, created_at),
                a AS (
                    INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome)
                    SELECT d.id, n, d.created_at, 5, CASE n WHEN 1 THEN 500 ELSE 200 END, CASE n WHEN 1 THEN 'http_status' ELSE 'success' END
                    FROM d, generate_series(1, 2) n
                    RETURNING 1)
                SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM a)
                """);
            cmd.CommandTimeout = 0;
            cmd.Parameters.Add(new NpgsqlParameter { Value = subscription });
            cmd.Parameters.Add(new NpgsqlParameter { Value = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero) });
            cmd.Parameters.Add(new NpgsqlParameter { Value = perDay });
            await using var reader = await cmd.ExecuteReaderAsync();
            await reader.ReadAsync();
            deliveries += reader.GetInt64(0);
            attempts += reader.GetInt64(1);
        }
        return (deliveries, attempts);
    }

    public static async Task SettleAsync(NpgsqlDataSource db)
    {
        await using (var analyze = db.CreateCommand("VACUUM ANALYZE webhook_deliveries, webhook_delivery_attempts"))
        {
            analyze.CommandTimeout = 0;
            await analyze.ExecuteNonQueryAsync();
        }
        await using var checkpoint = db.CreateCommand("CHECKPOINT");
        checkpoint.CommandTimeout = 0;
        await checkpoint.ExecuteNonQueryAsync();
    }

    public static async Task<long> CountExpiredAttemptsAsync(NpgsqlDataSource db, Guid subscription)
    {
        await using var cmd = db.CreateCommand("""
            SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
            WHERE d.subscription_id = $1 AND d.created_at < now() - interval '30 days'
            """);
        cmd.CommandTimeout = 0;
        cmd.Parameters.Add(new NpgsqlParameter { Value = subscription });
        return (long)(await cmd.ExecuteScalarAsync())!;
    }

    public static async Task<long> CountExpiredAsync(NpgsqlDataSource db, Guid subscription)
    {
        await using var cmd = db.CreateCommand("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1 AND created_at < now() - interval '30 days'");
        cmd.Parameters.Add(new NpgsqlParameter { Value = subscription });
        return (long)(await cmd.ExecuteScalarAsync())!;
    }
}
