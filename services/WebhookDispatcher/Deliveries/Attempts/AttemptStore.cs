using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The recorder's SQL: finished attempts, the deliveries' new states and the subscriptions'
/// counters and failure streaks, one statement per batch.
/// </summary>
public sealed class AttemptStore(NpgsqlDataSource db, IOptions<AutoDisableOptions> autoDisable) : StageStore(db)
{
    /// <summary>
    /// Records finished attempts and the deliveries' new states in one statement. An attempt is
    /// stored only while its claim stands: the delivery still carries its claim time (the token)
    /// and its number, also when a DELETE cancelled the delivery meanwhile, and also when the
    /// reconciler gave the attempt back but no new claim was made since (the attempt's number is
    /// then restored, so the answer counts and no second POST follows). The rows are locked for
    /// the statement, so a give-back running at the same moment either comes first (and the
    /// record still lands) or skips them. The delivery's state moves only if it is still
    /// unfinished. Deliveries reaching a final state add to their subscription's counters, one
    /// increment per subscription for the batch, and extend or end its failure streak; a 410 Gone,
    /// or a streak as long as <see cref="AutoDisableOptions"/> says, disables the subscription with
    /// its reason and leaves a notice to publish (<see cref="RecoveryStore.AnnounceDisabledAsync"/>).
    /// Returns the ids whose state moved; for the others no retry must follow.
    /// </summary>
    /// <param name="attempts">The finished attempts; their times are the process's clock.</param>
    /// <param name="clockOffset">The database's clock minus the process's (<see cref="DatabaseClock.Offset"/>).
    /// Every time stored is moved onto the database's clock by it, so due times, completions and
    /// failure streaks agree across replicas whose clocks disagree; durations are kept.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<IReadOnlySet<Guid>> RecordAsync(IReadOnlyList<FinishedAttempt> attempts, TimeSpan clockOffset,
        CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            WITH raw AS (
                SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[],
                                     $9::text[], $10::timestamptz[], $11::timestamptz[], $12::bool[], $13::timestamptz[], $14::timestamptz[])
                    AS r(id, attempt_number, started_at, duration_ms, status_code, outcome, error_message, excerpt,
                         status, completed_at, next_retry_at, disable, finished_at, claimed_at)),
            -- The process's times on the database's clock. The offset is an estimate (within half a
            -- round trip), and an attempt starts after its claim: never stored as earlier than it.
            r AS (
                SELECT id, attempt_number, GREATEST(started_at + $17, claimed_at) AS started_at, duration_ms, status_code, outcome,
                       error_message, excerpt, status, GREATEST(completed_at + $17, claimed_at) AS completed_at, next_retry_at + $17 AS next_retry_at,
                       disable, GREATEST(finished_at + $17, claimed_at) AS finished_at, claimed_at
                FROM raw),
            claimed AS (
                SELECT r.*, d.subscription_id FROM r JOIN webhook_deliveries d
                  ON d.id = r.id AND d.last_attempt_at = r.claimed_at
                 AND (d.attempt_count = r.attempt_number OR (NOT d.in_flight AND d.attempt_count = r.attempt_number - 1))
                -- Repeats the ids as a plain condition so the planner keeps only their day partitions.
                WHERE d.id = ANY ($1)
                FOR UPDATE OF d),
            attempt AS (
                INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome,
                                                       error_message, response_excerpt)
                SELECT id, attempt_number, started_at, duration_ms, status_code, outcome, error_message, excerpt FROM claimed
                ON CONFLICT DO NOTHING),
            delivery AS (
                UPDATE webhook_deliveries d
                SET status = c.status, response_status_code = c.status_code, response_body = c.excerpt, error_message = c.error_message,
                    attempt_count = c.attempt_number, completed_at = c.completed_at, next_retry_at = c.next_retry_at, lost_attempts = 0,
                    in_flight = false, held_by = NULL
                FROM claimed c
                WHERE d.id = c.id AND d.id = ANY ($1) AND d.status NOT IN ('success', 'failed', 'cancelled')
                RETURNING d.id, d.subscription_id, c.status, c.disable, c.finished_at),
            g AS (
                SELECT subscription_id,
                       count(*) AS total,
                       count(*) FILTER (WHERE status = 'success') AS succeeded,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       max(finished_at) AS last_final,
                       max(finished_at) FILTER (WHERE status = 'success') AS last_success,
                       max(finished_at) FILTER (WHERE status = 'failed') AS last_failure,
                       min(finished_at) FILTER (WHERE status = 'failed') AS first_failure,
                       bool_or(disable) AS gone
                FROM delivery WHERE status IN ('success', 'failed') GROUP BY subscription_id),
            -- A failure streak: no success in the batch extends it, one ends it. It disables the
            -- subscription once it is AfterDays old and MinFailures long (the last two parameters).
            streak AS (
                SELECT g.*, s.is_active,
                       CASE WHEN g.succeeded > 0 THEN NULL ELSE COALESCE(s.failing_since, g.first_failure) END AS failing_since,
                       CASE WHEN g.succeeded > 0 THEN 0 ELSE s.failures_since_success + g.failed END AS failures
                FROM g JOIN webhook_subscriptions s ON s.id = g.subscription_id),
            verdict AS (
                SELECT streak.*,
                       CASE WHEN NOT is_active THEN NULL
                            WHEN gone THEN 'endpoint_gone'
                            WHEN failing_since <= last_final - make_interval(secs => $15 * 86400) AND failures >= $16 THEN 'failing'
                       END AS disabled_reason
                FROM streak),
            counters AS (
                UPDATE webhook_subscriptions s
                SET total_deliveries = s.total_deliveries + v.total,
                    successful_deliveries = s.successful_deliveries + v.succeeded,
                    failed_deliveries = s.failed_deliveries + v.failed,
                    last_delivery_at = GREATEST(s.last_delivery_at, v.last_final),
                    last_success_at = GREATEST(s.last_success_at, v.last_success),
                    last_failure_at = GREATEST(s.last_failure_at, v.last_failure),
                    failing_since = v.failing_since,
                    failures_since_success = v.failures,
                    is_active = s.is_active AND v.disabled_reason IS NULL,
                    disabled_reason = COALESCE(v.disabled_reason, s.disabled_reason),
                    disabled_at = CASE WHEN v.disabled_reason IS NOT NULL THEN v.last_final ELSE s.disabled_at END,
                    disabled_notice_pending = s.disabled_notice_pending OR v.disabled_reason IS NOT NULL,
                    updated_at = CASE WHEN v.disabled_reason IS NOT NULL THEN v.last_final ELSE s.updated_at END
                FROM verdict v
                WHERE s.id = v.subscription_id)
            SELECT id FROM delivery
            """);
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Delivery.Id).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Delivery.AttemptNumber).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.StartedAt).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => (int)Math.Min(int.MaxValue, a.Response.Duration.TotalMilliseconds)).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Response.StatusCode).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Response.Outcome).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Response.ErrorMessage).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Response.ResponseExcerpt).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Decision.Status).ToArray() });
        cmd.Parameters.Add(new()
        {
            Value = attempts.Select(a => a.Decision.IsFinal ? a.FinishedAt : (DateTimeOffset?)null).ToArray(),
            NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz,
        });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Decision.NextRetryAt).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Decision.DisableSubscription).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.FinishedAt).ToArray() });
        cmd.Parameters.Add(new() { Value = attempts.Select(a => a.Delivery.ClaimedAt).ToArray() });
        cmd.Parameters.Add(new() { Value = autoDisable.Value.AfterDays });
        cmd.Parameters.Add(new() { Value = autoDisable.Value.MinFailures });
        cmd.Parameters.Add(new() { Value = clockOffset, NpgsqlDbType = NpgsqlDbType.Interval });
        var moved = new HashSet<Guid>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            moved.Add(reader.GetGuid(0));
        return moved;
    }
}
