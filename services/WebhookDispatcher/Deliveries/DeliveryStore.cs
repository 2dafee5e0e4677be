using Npgsql;
using NpgsqlTypes;

namespace WebhookDispatcher.Deliveries;

/// <summary>One event to fan out: its id, owner, type and the payload built once for every subscription.</summary>
/// <param name="EventId">The event's id: with the subscription, the delivery's idempotency key.</param>
/// <param name="UserId">Its owner.</param>
/// <param name="EventType">Its type name.</param>
/// <param name="Payload">The body every delivery of it sends.</param>
/// <param name="MaybeSeen">Whether it may have been fanned out before (the broker redelivered it,
/// or it was redelivered after a fault): then existing deliveries are looked for across days.</param>
public sealed record FanOutEvent(Guid EventId, string UserId, string EventType, string Payload, bool MaybeSeen = false);

/// <summary>A delivery to attempt when its endpoint lane allows, with the subscription that picks the lane.</summary>
/// <param name="DeliveryId">The delivery.</param>
/// <param name="SubscriptionId">Its subscription.</param>
public readonly record struct DeliveryWork(Guid DeliveryId, Guid SubscriptionId);

/// <summary>A delivery claimed for one attempt, with what the attempt needs from its subscription.</summary>
/// <remarks><see cref="ClaimedAt"/> is the claim's token: the delivery's <c>last_attempt_at</c> while the claim stands.
/// <see cref="RoundFirstAttempt"/> is the number of the current round's first attempt (1, or where a manual retry restarted).</remarks>
public sealed record ClaimedDelivery(
    Guid Id,
    DateTimeOffset ClaimedAt,
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
    int TimeoutSeconds,
    int? RateLimitPerSecond,
    int RoundFirstAttempt = 1);

/// <summary>One finished attempt, ready to be stored.</summary>
/// <param name="Delivery">The claim the attempt was made under.</param>
/// <param name="StartedAt">When the request started (UTC).</param>
/// <param name="Response">What the receiver answered, or how the request failed.</param>
/// <param name="Decision">The delivery's next state.</param>
/// <param name="FinishedAt">When the answer was complete or the request failed (UTC).</param>
public sealed record FinishedAttempt(ClaimedDelivery Delivery, DateTimeOffset StartedAt, WebhookResponse Response, AttemptDecision Decision,
    DateTimeOffset FinishedAt);

/// <summary>
/// The delivery hot path in set-based SQL, one statement (one round trip, one commit) per batch:
/// fan-out insert-or-skip for many events, the claim of many attempts, the record of many
/// attempts with counters grouped per subscription, and the reconciler's scan. Every state
/// change is a conditional UPDATE, so duplicate messages, concurrent replicas and a reconciler
/// re-publish cannot cause a second attempt of the same number.
/// </summary>
/// <remarks>
/// Statements that pick deliveries by id say "unfinished" as <c>status NOT IN ('success',
/// 'failed', 'cancelled')</c>, not <c>status IN ('pending', 'retrying')</c>: the latter matches the
/// predicate of the partial due index, and the planner then scanned every unfinished delivery of
/// the partition through it instead of looking up the ids (1.4 ms a claim under load instead of
/// 0.1 ms). The statements that do want that index (the reconciler's scans, the backlogs) keep it.
/// </remarks>
public sealed class DeliveryStore(
    NpgsqlDataSource db, Microsoft.Extensions.Options.IOptions<AutoDisableOptions> autoDisable, Microsoft.Extensions.Options.IOptions<DeliveryOptions> options)
{
    /// <summary>How long past its timeout an attempt in flight keeps its claim, in seconds.</summary>
    public const int LeaseMarginSeconds = 30;

    /// <summary>How early, in seconds, a redelivered message may arrive and still be attempted (clock skew).</summary>
    public const double EarlyToleranceSeconds = 1;

    /// <summary>Days back the fan-out looks for an event's existing deliveries (a redelivered or re-published event).</summary>
    public const int DedupDays = 2;

    /// <summary>
    /// Within this long either side of midnight UTC every event is looked for across the last
    /// <see cref="DedupDays"/> days, as a redelivered one is: a publisher's retry of an event whose
    /// first copy landed in the day before would otherwise find no conflict in the new day's
    /// partition. Either side, because delivery ids take the database's clock and this the
    /// process's.
    /// </summary>
    public static readonly TimeSpan MidnightMargin = TimeSpan.FromHours(1);

    /// <summary>Whether <paramref name="now"/> is within <see cref="MidnightMargin"/> of a midnight UTC.</summary>
    public static bool NearMidnightUtc(DateTimeOffset now)
    {
        var timeOfDay = now.UtcDateTime.TimeOfDay;
        return timeOfDay < MidnightMargin || timeOfDay > TimeSpan.FromDays(1) - MidnightMargin;
    }

    /// <summary>
    /// Tells the store a statement failed: when the failure shows a broken connection (the
    /// database restarted), the pool is cleared so the next statement opens a fresh one instead
    /// of failing on the next dead pooled connection.
    /// </summary>
    public void OnFailure(Exception exception) => Data.BrokenConnections.ClearIfBroken(db, exception);

    /// <summary>
    /// Creates one pending delivery per (event, active subscription of the event's user that
    /// includes its type), skipping those that exist (unique (subscription_id, event_id)), and
    /// returns the work to attempt: the new deliveries, and, for events that may have been seen
    /// before (<see cref="FanOutEvent.MaybeSeen"/>), those that exist but were never attempted (a
    /// redelivered event after a crash between commit and attempt; otherwise the reconciler
    /// re-publishes them).
    /// </summary>
    /// <param name="events">Events with distinct ids.</param>
    /// <param name="now">Creation time and due time of the new deliveries.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<IReadOnlyList<DeliveryWork>> FanOutAsync(IReadOnlyList<FanOutEvent> events, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        // The pair (subscription, event) is unique within each day partition (ON CONFLICT). An
        // event that may have been fanned out before, and near midnight UTC every event, is also
        // looked for in the last DedupDays days, where any redelivery lands, and its deliveries
        // never attempted are returned again (`existing` reads the snapshot from before the
        // INSERT). A first delivery of an event during the day, almost all of them, skips that
        // look: it costs the planner a second pass over the partitions.
        var maybeSeen = events.Any(e => e.MaybeSeen) || NearMidnightUtc(now);
        await using var cmd = db.CreateCommand(maybeSeen
            ? """
              WITH e AS (
                  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS e(event_id, user_id, event_type, payload)),
              m AS (
                  SELECT e.event_id, e.event_type, e.payload, s.id AS subscription_id, s.retry_count
                  FROM e JOIN webhook_subscriptions s
                    ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)),
              existing AS (
                  SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempt_count
                  FROM m JOIN webhook_deliveries d
                    ON d.subscription_id = m.subscription_id AND d.event_id = m.event_id AND d.id >= $6 AND d.id < $7),
              ins AS (
                  INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                                  created_at, next_retry_at)
                  SELECT webhook_uuid_v7(), m.subscription_id, m.event_type, m.event_id, m.payload, 'pending', 0, 1 + m.retry_count, $5, $5
                  FROM m
                  WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.subscription_id = m.subscription_id AND x.event_id = m.event_id)
                  ON CONFLICT DO NOTHING
                  RETURNING id, subscription_id)
              SELECT id, subscription_id FROM ins
              UNION ALL
              SELECT id, subscription_id FROM existing WHERE status = 'pending' AND attempt_count = 0
              """
            : """
              WITH e AS (
                  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS e(event_id, user_id, event_type, payload))
              INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                              created_at, next_retry_at)
              SELECT webhook_uuid_v7(), s.id, e.event_type, e.event_id, e.payload, 'pending', 0, 1 + s.retry_count, $5, $5
              FROM e JOIN webhook_subscriptions s
                ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)
              ON CONFLICT DO NOTHING
              RETURNING id, subscription_id
              """);
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.UserId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventType).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.Payload).ToArray() });
        cmd.Parameters.Add(new() { Value = now });
        if (maybeSeen)
        {
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now - TimeSpan.FromDays(DedupDays)) });
            // Bounded above too, so the (empty) partitions made ahead for the coming days are not planned.
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now + TimeSpan.FromDays(1)) });
        }
        var work = new List<DeliveryWork>(events.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        return work;
    }

    /// <summary>
    /// Starts the next attempt of each delivery that is unfinished, due, has attempts left and
    /// whose subscription is active: increments <c>attempt_count</c> and leases the delivery until
    /// the attempt's timeout plus <see cref="LeaseMarginSeconds"/> (so no second claim can start
    /// meanwhile), and only when no earlier claim is still unrecorded (that ends only by the
    /// reconciler's give-back). <paramref name="now"/> becomes the claim's token (<c>last_attempt_at</c>), so
    /// pass it at the database's precision (whole microseconds). Deliveries whose subscription is inactive or deleted are cancelled. Returns the
    /// claimed ones; the others must not be attempted (final, duplicate message, early, cancelled).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing was claimed.</exception>
    public async Task<IReadOnlyList<ClaimedDelivery>> ClaimAsync(IReadOnlyCollection<Guid> deliveryIds, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var ids = deliveryIds.ToArray();
        var claimed = new List<ClaimedDelivery>(ids.Length);
        await using (var claim = db.CreateCommand("""
            UPDATE webhook_deliveries d
            SET attempt_count = d.attempt_count + 1,
                first_attempt_at = COALESCE(d.first_attempt_at, $2),
                last_attempt_at = $2,
                next_retry_at = $2 + make_interval(secs => s.timeout_seconds + $3),
                held_until = NULL,
                in_flight = true
            FROM webhook_subscriptions s
            WHERE d.id = ANY ($1) AND s.id = d.subscription_id AND s.is_active AND s.deleted_at IS NULL
              AND d.status NOT IN ('success', 'failed', 'cancelled')
              AND d.attempt_count < d.max_attempts
              AND (d.next_retry_at IS NULL OR d.next_retry_at <= $2 + make_interval(secs => $4))
              -- No earlier claim still unrecorded: its answer may be in some process's memory (a
              -- database outage); only the reconciler's give-back ends such a claim.
              AND NOT d.in_flight
            RETURNING d.id, d.subscription_id, d.event_id, d.event_type, d.payload, d.attempt_count, d.max_attempts,
                      s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, s.timeout_seconds, s.rate_limit_per_second,
                      d.round_first_attempt
            """))
        {
            AddParameters(claim, ids, now, (double)LeaseMarginSeconds, EarlyToleranceSeconds);
            await using var r = await claim.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
            {
                claimed.Add(new ClaimedDelivery(r.GetGuid(0), now, r.GetGuid(1), r.GetGuid(2), r.GetString(3), r.GetString(4), r.GetInt32(5),
                    r.GetInt32(6), r.GetString(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9),
                    r.IsDBNull(10) ? null : r.GetFieldValue<DateTimeOffset>(10), r.GetInt32(11), r.IsDBNull(12) ? null : r.GetInt32(12), r.GetInt32(13)));
            }
        }
        if (claimed.Count == ids.Length) return claimed;

        // Some could not be claimed (final, not due, a duplicate message, or their subscription is
        // off): those of an inactive or deleted subscription end here as cancelled.
        var rest = ids.Except(claimed.Select(c => c.Id)).ToArray();
        await using var cancel = db.CreateCommand("""
            UPDATE webhook_deliveries d
            SET status = 'cancelled', completed_at = $2, next_retry_at = NULL, held_until = NULL, in_flight = false,
                error_message = COALESCE(d.error_message, 'Subscription disabled')
            FROM webhook_subscriptions s
            WHERE d.id = ANY ($1) AND s.id = d.subscription_id AND (NOT s.is_active OR s.deleted_at IS NOT NULL)
              AND d.status NOT IN ('success', 'failed', 'cancelled') AND NOT d.in_flight
            """);
        AddParameters(cancel, rest, now);
        await cancel.ExecuteNonQueryAsync(cancellationToken);
        return claimed;
    }

    /// <summary>
    /// Records finished attempts and the deliveries' new states in one statement. An attempt is
    /// stored only while its claim stands (the delivery still carries its number and claim time,
    /// also when a DELETE cancelled the delivery meanwhile; not when the reconciler gave the
    /// attempt back after its lease ran out); the delivery's state moves
    /// only if it is still unfinished. Deliveries reaching a final state add to their
    /// subscription's counters, one increment per subscription for the batch, and extend or end
    /// its failure streak; a 410 Gone, or a streak as long as <see cref="AutoDisableOptions"/>
    /// says, disables the subscription with its reason and leaves a notice to publish
    /// (<see cref="AnnounceDisabledAsync"/>). Returns the ids whose state moved; for the others no retry
    /// must follow.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<IReadOnlySet<Guid>> RecordAsync(IReadOnlyList<FinishedAttempt> attempts, CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            WITH r AS (
                SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[],
                                     $9::text[], $10::timestamptz[], $11::timestamptz[], $12::bool[], $13::timestamptz[], $14::timestamptz[])
                    AS r(id, attempt_number, started_at, duration_ms, status_code, outcome, error_message, excerpt,
                         status, completed_at, next_retry_at, disable, finished_at, claimed_at)),
            claimed AS (
                SELECT r.*, d.subscription_id FROM r JOIN webhook_deliveries d
                  ON d.id = r.id AND d.attempt_count = r.attempt_number AND d.last_attempt_at = r.claimed_at
                -- Repeats the ids as a plain condition so the planner keeps only their day partitions.
                WHERE d.id = ANY ($1)),
            attempt AS (
                INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome,
                                                       error_message, response_excerpt)
                SELECT id, attempt_number, started_at, duration_ms, status_code, outcome, error_message, excerpt FROM claimed
                ON CONFLICT DO NOTHING),
            delivery AS (
                UPDATE webhook_deliveries d
                SET status = c.status, response_status_code = c.status_code, response_body = c.excerpt, error_message = c.error_message,
                    completed_at = c.completed_at, next_retry_at = c.next_retry_at, lost_attempts = 0, in_flight = false
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
        var moved = new HashSet<Guid>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            moved.Add(reader.GetGuid(0));
        return moved;
    }

    /// <summary>
    /// Publishes, through <paramref name="publish"/>, a <see cref="Notely.Events.WebhookSubscriptionDisabled"/>
    /// for each subscription disabled automatically and not yet announced (at most 100 a call),
    /// then marks them announced, in one transaction: a crash between the two announces again
    /// (at least once). Safe in several replicas at once (SKIP LOCKED). Returns how many it announced.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing was marked.</exception>
    public async Task<int> AnnounceDisabledAsync(Func<IReadOnlyList<Notely.Events.WebhookSubscriptionDisabled>, Task> publish,
        CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        var notices = new List<Notely.Events.WebhookSubscriptionDisabled>();
        await using (var select = new NpgsqlCommand("""
            SELECT id, user_id, url, disabled_reason, disabled_at, failing_since, failures_since_success FROM webhook_subscriptions
            WHERE disabled_notice_pending AND deleted_at IS NULL AND disabled_reason IS NOT NULL AND disabled_at IS NOT NULL
            LIMIT 100 FOR UPDATE SKIP LOCKED
            """, connection, tx))
        await using (var r = await select.ExecuteReaderAsync(cancellationToken))
        {
            while (await r.ReadAsync(cancellationToken))
                notices.Add(new Notely.Events.WebhookSubscriptionDisabled
                {
                    SubscriptionId = r.GetGuid(0),
                    UserId = r.GetString(1),
                    Url = r.GetString(2),
                    Reason = r.GetString(3),
                    DisabledAt = r.GetFieldValue<DateTimeOffset>(4),
                    FailingSince = r.IsDBNull(5) ? null : r.GetFieldValue<DateTimeOffset>(5),
                    FailuresSinceSuccess = r.GetInt32(6),
                });
        }
        if (notices.Count == 0) return 0;
        await publish(notices);
        await using (var done = new NpgsqlCommand("UPDATE webhook_subscriptions SET disabled_notice_pending = false WHERE id = ANY ($1)", connection, tx))
        {
            done.Parameters.Add(new() { Value = notices.Select(n => n.SubscriptionId).ToArray() });
            await done.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
        return notices.Count;
    }

    /// <summary>
    /// Marks deliveries waiting in this process's lanes as held until <paramref name="until"/>, so
    /// the reconciler of any replica leaves them alone while they wait for capacity; null gives
    /// them back (shutdown). Touches only unfinished deliveries and no indexed column.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task HoldAsync(IReadOnlyCollection<Guid> deliveryIds, DateTimeOffset? until, CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE webhook_deliveries SET held_until = $2 WHERE id = ANY ($1) AND status NOT IN ('success', 'failed', 'cancelled')
            """);
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        cmd.Parameters.Add(Parameter(until, NpgsqlDbType.TimestampTz));
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Moves due deliveries that do not fit in their lane to the subscription's backlog in the
    /// database: due whenever capacity allows (<c>next_retry_at</c> null, which also keeps them
    /// out of the reconciler's scan), held by this process until <paramref name="heldUntil"/>.
    /// Deliveries not due yet or finished are left alone.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    public async Task DeferToBacklogAsync(IReadOnlyCollection<Guid> deliveryIds, DateTimeOffset now, DateTimeOffset heldUntil,
        CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE webhook_deliveries SET next_retry_at = NULL, held_until = $3
            WHERE id = ANY ($1) AND status NOT IN ('success', 'failed', 'cancelled') AND attempt_count < max_attempts
              AND (next_retry_at IS NULL OR next_retry_at <= $2 + make_interval(secs => $4))
            """);
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        cmd.Parameters.Add(new() { Value = now });
        cmd.Parameters.Add(new() { Value = heldUntil });
        cmd.Parameters.Add(new() { Value = EarlyToleranceSeconds });
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Takes up to <paramref name="limit"/> deliveries from a subscription's backlog, oldest
    /// first: due now again and held until <paramref name="heldUntil"/>. Returns their ids; fewer
    /// than asked means the backlog is empty (or another replica took the rest).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    public async Task<IReadOnlyList<Guid>> TakeBacklogAsync(Guid subscriptionId, int limit, DateTimeOffset now, DateTimeOffset heldUntil,
        CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE webhook_deliveries SET next_retry_at = $3, held_until = $4
            WHERE id IN (SELECT id FROM webhook_deliveries
                         WHERE subscription_id = $1 AND status IN ('pending', 'retrying') AND next_retry_at IS NULL
                         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """);
        cmd.Parameters.Add(new() { Value = subscriptionId });
        cmd.Parameters.Add(new() { Value = limit });
        cmd.Parameters.Add(new() { Value = now });
        cmd.Parameters.Add(new() { Value = heldUntil });
        var ids = new List<Guid>(limit);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            ids.Add(reader.GetGuid(0));
        ids.Sort(); // time-ordered ids: oldest first
        return ids;
    }

    /// <summary>Renews this process's hold on the backlogs of <paramref name="subscriptionIds"/> (no indexed column changes).</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task HoldBacklogsAsync(IReadOnlyCollection<Guid> subscriptionIds, DateTimeOffset until, CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE webhook_deliveries SET held_until = $2
            WHERE subscription_id = ANY ($1) AND status IN ('pending', 'retrying') AND next_retry_at IS NULL
            """);
        cmd.Parameters.Add(new() { Value = subscriptionIds.ToArray() });
        cmd.Parameters.Add(new() { Value = until });
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The subscriptions of deliveries (for messages written before <see cref="DeliverWebhook.SubscriptionId"/> existed).</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyList<DeliveryWork>> FindSubscriptionsAsync(IReadOnlyCollection<Guid> deliveryIds, CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("SELECT id, subscription_id FROM webhook_deliveries WHERE id = ANY ($1)");
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        var work = new List<DeliveryWork>(deliveryIds.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        return work;
    }

    /// <summary>
    /// Starts a new round of attempts for a failed or cancelled delivery: pending, due now, with
    /// <paramref name="retryCount"/> + 1 more attempts, whose retry schedule starts again at 2 s
    /// (<c>round_first_attempt</c>). A failed delivery leaves the subscription's
    /// final-state counters (it will be counted again when the new round ends). Returns the status
    /// the delivery had, or null when it does not belong to the subscription; the delivery was
    /// restarted only if that status was failed or cancelled.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
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
            SET status = 'pending', max_attempts = attempt_count + 1 + $2, round_first_attempt = attempt_count + 1,
                next_retry_at = $3, completed_at = NULL
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
    /// The reconciler's pass over unfinished deliveries due more than <paramref name="grace"/> ago
    /// and not held by a replica's lane. First, attempts that were claimed but never recorded (the
    /// process was killed, or lost the database, halfway through) stop counting, so they are made
    /// again rather than silently using up the delivery's attempts — unless the same delivery
    /// lost <see cref="DeliveryOptions.MaxLostAttempts"/> attempts in a row: then it fails. Then the deliveries with
    /// attempts left (their message was lost, purged, or never sent) and the backlogs whose hold
    /// ran out (see <see cref="DeferToBacklogAsync"/>) are made due now and returned, to be
    /// re-published: at most <paramref name="batchSize"/> of each. Safe to run in several
    /// processes at once (SKIP LOCKED).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    /// <param name="now">The time of the pass.</param>
    /// <param name="grace">How long past due a delivery may be before it counts as lost.</param>
    /// <param name="batchSize">Deliveries re-published per pass at most, of each kind.</param>
    /// <param name="gap">Passes further apart than this mean the database (or every dispatcher) was away.</param>
    /// <param name="settle">How long passes must have run again since such a gap before attempts are given back.</param>
    /// <param name="cancellationToken">Cancels the pass.</param>
    public async Task<IReadOnlyList<DeliveryWork>> ReclaimOverdueAsync(DateTimeOffset now, TimeSpan grace, int batchSize, TimeSpan gap, TimeSpan settle,
        CancellationToken cancellationToken)
    {
        await using var batch = db.CreateBatch();
        // Passes leave their time in one shared row. After a gap (the database was down, or no
        // dispatcher ran), lost attempts are given back only once passes have run again for
        // `settle`: a process that kept an answer in memory through the outage records it within
        // seconds of the database's return, and must win against the give-back.
        batch.BatchCommands.Add(Command("""
            INSERT INTO webhook_reconciler_state AS r (id, last_pass_at, up_since) VALUES (1, $1, $1)
            ON CONFLICT (id) DO UPDATE
            SET up_since = CASE WHEN r.last_pass_at < $1 - $2 * interval '1 second' THEN $1 ELSE r.up_since END,
                last_pass_at = GREATEST(r.last_pass_at, $1)
            """, now, gap.TotalSeconds));
        // A claimed attempt never recorded is given back (made again, not counted), unless it was
        // lost MaxLostAttempts times in a row: then the delivery fails with a recorded "lost"
        // attempt and counts as failed, so an attempt that kills the process cannot loop forever.
        batch.BatchCommands.Add(Command("""
            WITH lost AS (
                SELECT d.id, d.subscription_id, d.lost_attempts + 1 AS times,
                       (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)::int AS recorded
                FROM webhook_deliveries d
                WHERE d.in_flight AND d.status IN ('pending', 'retrying') AND d.next_retry_at < $1
                  AND (SELECT up_since FROM webhook_reconciler_state WHERE id = 1) <= $2 - $4 * interval '1 second'
                FOR UPDATE SKIP LOCKED),
            poisoned AS (
                INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, outcome, error_message)
                SELECT id, recorded + 1, $2, 0, 'lost', format('The dispatcher stopped during this attempt %s times in a row; not tried again', times)
                FROM lost WHERE times >= $3
                ON CONFLICT DO NOTHING),
            given AS (
                UPDATE webhook_deliveries d
                SET attempt_count = CASE WHEN l.times >= $3 THEN l.recorded + 1 ELSE l.recorded END,
                    lost_attempts = l.times,
                    in_flight = false,
                    status = CASE WHEN l.times >= $3 THEN 'failed' ELSE d.status END,
                    completed_at = CASE WHEN l.times >= $3 THEN $2 ELSE d.completed_at END,
                    next_retry_at = CASE WHEN l.times >= $3 THEN NULL ELSE d.next_retry_at END,
                    response_status_code = CASE WHEN l.times >= $3 THEN NULL ELSE d.response_status_code END,
                    error_message = CASE WHEN l.times >= $3
                                         THEN format('The dispatcher stopped during this attempt %s times in a row; not tried again', l.times)
                                         ELSE d.error_message END
                FROM lost l WHERE d.id = l.id
                RETURNING d.subscription_id, l.times >= $3 AS failed)
            UPDATE webhook_subscriptions s
            SET total_deliveries = s.total_deliveries + g.n, failed_deliveries = s.failed_deliveries + g.n,
                last_delivery_at = GREATEST(s.last_delivery_at, $2), last_failure_at = GREATEST(s.last_failure_at, $2)
            FROM (SELECT subscription_id, count(*) AS n FROM given WHERE failed GROUP BY subscription_id) g
            WHERE s.id = g.subscription_id
            """, now - grace, now, options.Value.MaxLostAttempts, settle.TotalSeconds));
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries SET next_retry_at = $1
            WHERE id IN (SELECT d.id FROM webhook_deliveries d
                         WHERE d.status IN ('pending', 'retrying') AND d.next_retry_at < $2 AND d.attempt_count < d.max_attempts
                           AND (d.held_until IS NULL OR d.held_until < $1)
                           AND NOT d.in_flight
                         ORDER BY d.next_retry_at LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING id, subscription_id
            """, now, now - grace, batchSize));
        // A backlog whose hold ran out: the replica that held it has stopped.
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries SET next_retry_at = $1
            WHERE id IN (SELECT id FROM webhook_deliveries
                         WHERE status IN ('pending', 'retrying') AND next_retry_at IS NULL AND (held_until IS NULL OR held_until < $1)
                         LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id, subscription_id
            """, now, batchSize));
        var work = new List<DeliveryWork>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        do
        {
            while (await reader.ReadAsync(cancellationToken))
                work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        } while (await reader.NextResultAsync(cancellationToken));
        return work;
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

    private static NpgsqlParameter Parameter(object? value, NpgsqlDbType nullType = NpgsqlDbType.Unknown) => value switch
    {
        null => new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = nullType },
        _ => new NpgsqlParameter { Value = value },
    };
}
