using Npgsql;
using NpgsqlTypes;

namespace WebhookDispatcher.Deliveries;

/// <summary>A delivery claimed for one attempt, with what the attempt needs from its subscription.</summary>
public sealed record ClaimedDelivery(
    Guid Id,
    Guid SubscriptionId,
    Guid EventId,
    string EventType,
    string Payload,
    int AttemptNumber,
    int MaxAttempts,
    string Url,
    string Secret,
    string? PreviousSecret,
    DateTimeOffset? PreviousSecretExpiresAt,
    int TimeoutSeconds);

/// <summary>What to store after an attempt.</summary>
/// <param name="Status">The delivery's new status.</param>
/// <param name="NextRetryAt">When the next attempt is due, if <see cref="DeliveryStatus.Retrying"/>.</param>
/// <param name="DisableSubscription">Whether the receiver asked to stop (410 Gone).</param>
public sealed record AttemptDecision(string Status, DateTimeOffset? NextRetryAt, bool DisableSubscription);

/// <summary>
/// The delivery hot path in set-based SQL: fan-out insert-or-skip, the per-attempt claim, the
/// attempt record with atomic counter increments, and the reconciler's scan. Every state change
/// is one conditional UPDATE, so duplicate messages, concurrent consumers and a reconciler
/// re-publish cannot cause a second attempt of the same number.
/// </summary>
public sealed class DeliveryStore(NpgsqlDataSource db)
{
    /// <summary>How long past its timeout an attempt in flight keeps its claim, in seconds.</summary>
    public const int LeaseMarginSeconds = 30;

    /// <summary>How early, in seconds, a redelivered message may arrive and still be attempted (clock skew).</summary>
    public const double EarlyToleranceSeconds = 1;

    /// <summary>
    /// Creates one pending delivery per active subscription of <paramref name="userId"/> that
    /// includes <paramref name="eventType"/>, skipping those that exist (unique (subscription_id,
    /// event_id)), and returns the ids of this event's deliveries that have not been attempted yet,
    /// so a redelivered event re-publishes what a crash may have left unpublished.
    /// </summary>
    public async Task<IReadOnlyList<Guid>> FanOutAsync(Guid eventId, string userId, string eventType, string payload,
        DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var batch = db.CreateBatch();
        batch.BatchCommands.Add(Command("""
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at)
            SELECT gen_random_uuid(), s.id, $1, $2, $3, 'pending', 0, 1 + s.retry_count, $4, $4
            FROM webhook_subscriptions s
            WHERE s.user_id = $5 AND s.is_active AND s.deleted_at IS NULL AND $1 = ANY (s.event_types)
            ON CONFLICT (subscription_id, event_id) DO NOTHING
            """, eventType, eventId, payload, now, userId));
        batch.BatchCommands.Add(Command("""
            SELECT id FROM webhook_deliveries WHERE event_id = $1 AND status = 'pending' AND attempt_count = 0
            """, eventId));
        var ids = new List<Guid>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            ids.Add(reader.GetGuid(0));
        return ids;
    }

    /// <summary>
    /// Starts attempt n+1 of a delivery if it is unfinished, due, has attempts left and its
    /// subscription is active: increments <c>attempt_count</c> and leases the delivery until the
    /// attempt's timeout plus <see cref="LeaseMarginSeconds"/>. Returns null when the message must
    /// not cause an attempt (already final, duplicate, early, or subscription inactive — the latter
    /// cancels the delivery).
    /// </summary>
    public async Task<ClaimedDelivery?> TryClaimAsync(Guid deliveryId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE webhook_deliveries d
            SET attempt_count = d.attempt_count + 1,
                first_attempt_at = COALESCE(d.first_attempt_at, $2),
                last_attempt_at = $2,
                next_retry_at = $2 + make_interval(secs => s.timeout_seconds + $3)
            FROM webhook_subscriptions s
            WHERE d.id = $1 AND s.id = d.subscription_id AND s.is_active
              AND s.deleted_at IS NULL
              AND d.status IN ('pending', 'retrying')
              AND d.attempt_count < d.max_attempts
              AND (d.next_retry_at IS NULL OR d.next_retry_at <= $2 + make_interval(secs => $4))
            RETURNING d.id, d.subscription_id, d.event_id, d.event_type, d.payload, d.attempt_count, d.max_attempts,
                      s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, s.timeout_seconds
            """);
        cmd.Parameters.Add(new() { Value = deliveryId });
        cmd.Parameters.Add(new() { Value = now });
        cmd.Parameters.Add(new() { Value = (double)LeaseMarginSeconds });
        cmd.Parameters.Add(new() { Value = EarlyToleranceSeconds });
        await using (var r = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            if (await r.ReadAsync(cancellationToken))
                return new ClaimedDelivery(r.GetGuid(0), r.GetGuid(1), r.GetGuid(2), r.GetString(3), r.GetString(4), r.GetInt32(5),
                    r.GetInt32(6), r.GetString(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9),
                    r.IsDBNull(10) ? null : r.GetFieldValue<DateTimeOffset>(10), r.GetInt32(11));
        }

        await using var cancel = db.CreateCommand("""
            UPDATE webhook_deliveries d
            SET status = 'cancelled', completed_at = $2, next_retry_at = NULL,
                error_message = COALESCE(d.error_message, 'Subscription disabled')
            FROM webhook_subscriptions s
            WHERE d.id = $1 AND s.id = d.subscription_id AND (NOT s.is_active OR s.deleted_at IS NOT NULL)
              AND d.status IN ('pending', 'retrying')
            """);
        cancel.Parameters.Add(new() { Value = deliveryId });
        cancel.Parameters.Add(new() { Value = now });
        await cancel.ExecuteNonQueryAsync(cancellationToken);
        return null;
    }

    /// <summary>
    /// Records the attempt and the delivery's new state in one statement; on a final status also
    /// increments the subscription's counters (atomic SQL increments) and, for 410 Gone, disables it.
    /// Returns false when the delivery was finished meanwhile (e.g. cancelled by a DELETE): the
    /// attempt is still recorded but the delivery's state is left alone and no retry must follow.
    /// </summary>
    public async Task<bool> RecordAttemptAsync(ClaimedDelivery delivery, DateTimeOffset startedAt, WebhookResponse response,
        AttemptDecision decision, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // One statement, so one round trip per attempt and atomic without an explicit transaction:
        // the counters move only if the delivery row was still open.
        await using var cmd = db.CreateCommand("""
            WITH attempt AS (
                INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome, error_message, response_excerpt)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)),
            delivery AS (
                UPDATE webhook_deliveries
                SET status = $9, response_status_code = $5, response_body = $8, error_message = $7,
                    completed_at = $10, next_retry_at = $11
                WHERE id = $1 AND status IN ('pending', 'retrying')
                RETURNING id),
            counters AS (
                UPDATE webhook_subscriptions
                SET total_deliveries = total_deliveries + 1,
                    successful_deliveries = successful_deliveries + CASE WHEN $14 THEN 1 ELSE 0 END,
                    failed_deliveries = failed_deliveries + CASE WHEN $14 THEN 0 ELSE 1 END,
                    last_delivery_at = $16,
                    last_success_at = CASE WHEN $14 THEN $16 ELSE last_success_at END,
                    last_failure_at = CASE WHEN $14 THEN last_failure_at ELSE $16 END,
                    is_active = is_active AND NOT $15,
                    updated_at = CASE WHEN $15 THEN $16 ELSE updated_at END
                WHERE id = $12 AND $13 AND EXISTS (SELECT 1 FROM delivery))
            SELECT count(*) FROM delivery
            """);
        var final = decision.Status is DeliveryStatus.Success or DeliveryStatus.Failed;
        AddParameters(cmd,
            delivery.Id, delivery.AttemptNumber, startedAt, (int)Math.Min(int.MaxValue, response.Duration.TotalMilliseconds),
            response.StatusCode, response.Outcome, response.ErrorMessage, response.ResponseExcerpt,
            decision.Status, final ? now : null, decision.NextRetryAt,
            delivery.SubscriptionId, final, decision.Status == DeliveryStatus.Success, decision.DisableSubscription, now);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken))! == 1;
    }

    /// <summary>
    /// Starts a new round of attempts for a failed or cancelled delivery: pending, due now, with
    /// <paramref name="retryCount"/> + 1 more attempts. A failed delivery leaves the subscription's
    /// final-state counters (it will be counted again when the new round ends). Returns the status
    /// the delivery had, or null when it does not belong to the subscription; the delivery was
    /// restarted only if that status was failed or cancelled.
    /// </summary>
    public async Task<string?> RestartAsync(Guid deliveryId, Guid subscriptionId, int retryCount, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        string? status;
        await using (var select = new NpgsqlCommand(
            "SELECT status FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2 FOR UPDATE", connection, tx))
        {
            AddParameters(select, deliveryId, subscriptionId);
            status = (string?)await select.ExecuteScalarAsync(cancellationToken);
        }
        if (status is not (DeliveryStatus.Failed or DeliveryStatus.Cancelled))
            return status;

        await using (var restart = new NpgsqlCommand("""
            UPDATE webhook_deliveries
            SET status = 'pending', max_attempts = attempt_count + 1 + $2, next_retry_at = $3, completed_at = NULL
            WHERE id = $1
            """, connection, tx))
        {
            AddParameters(restart, deliveryId, retryCount, now);
            await restart.ExecuteNonQueryAsync(cancellationToken);
        }
        if (status == DeliveryStatus.Failed)
        {
            await using var uncount = new NpgsqlCommand("""
                UPDATE webhook_subscriptions
                SET total_deliveries = total_deliveries - 1, failed_deliveries = failed_deliveries - 1
                WHERE id = $1
                """, connection, tx);
            AddParameters(uncount, subscriptionId);
            await uncount.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
        return status;
    }

    /// <summary>
    /// The reconciler's pass over unfinished deliveries due more than <paramref name="grace"/> ago.
    /// First, attempts that were claimed but never recorded (the process was killed, or lost the
    /// database, halfway through) stop counting, so they are made again rather than silently
    /// using up the delivery's attempts. Then the deliveries with attempts left (their message was
    /// lost or never published) are made due now and returned, to be re-published. Safe to run in
    /// several processes at once (SKIP LOCKED).
    /// </summary>
    public async Task<IReadOnlyList<Guid>> ReclaimOverdueAsync(DateTimeOffset now, TimeSpan grace, int batchSize,
        CancellationToken cancellationToken)
    {
        await using var batch = db.CreateBatch();
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries d
            SET attempt_count = (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)
            WHERE d.status IN ('pending', 'retrying') AND d.next_retry_at < $1
              AND d.attempt_count > (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)
            """, now - grace));
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries SET next_retry_at = $1
            WHERE id IN (SELECT id FROM webhook_deliveries
                         WHERE status IN ('pending', 'retrying') AND next_retry_at < $2 AND attempt_count < max_attempts
                         ORDER BY next_retry_at LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """, now, now - grace, batchSize));
        var ids = new List<Guid>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            ids.Add(reader.GetGuid(0));
        return ids;
    }

    private static NpgsqlBatchCommand Command(string sql, params object?[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
            command.Parameters.Add(Parameter(value));
        return command;
    }

    private static void AddParameters(NpgsqlCommand command, params object?[] values)
    {
        foreach (var value in values)
            command.Parameters.Add(Parameter(value));
    }

    private static NpgsqlParameter Parameter(object? value) => value switch
    {
        null => new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlDbType.Unknown },
        _ => new NpgsqlParameter { Value = value },
    };
}
