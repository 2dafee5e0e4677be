using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The SQL of recovery: the reconciler's pass (lost attempts given back, overdue deliveries and
/// orphaned backlogs re-published), the announcement of disabled subscriptions, and the manual
/// retry of a finished delivery.
/// </summary>
public sealed class RecoveryStore(NpgsqlDataSource db, IOptions<DeliveryOptions> options) : StageStore(db)
{
    /// <summary>An advisory lock key: one announcer at a time across replicas.</summary>
    private const long AnnounceLockKey = 0x5745_4248_4E4F_5449; // "WEBHNOTI"

    /// <summary>How long the publish of one batch of notices may take before the pass gives up (and tries again at the next).</summary>
    public static readonly TimeSpan AnnounceTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Publishes, through <paramref name="publish"/>, a <see cref="Notely.Events.WebhookSubscriptionDisabled"/>
    /// for each subscription disabled automatically and not yet announced (at most 100 a call),
    /// then marks those announced whose <c>disabled_at</c> is still the one announced: a crash or a
    /// failed publish between the two announces again (at least once). No row is locked while it
    /// publishes (the recorder updates the same rows), and the publish is bounded by
    /// <see cref="AnnounceTimeout"/>; one replica announces at a time (a transaction's advisory
    /// lock, the only lock its transaction holds until the final update), the others skip.
    /// Returns how many it announced.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing was marked.</exception>
    /// <exception cref="OperationCanceledException">The publish took longer than <see cref="AnnounceTimeout"/>; nothing was marked.</exception>
    public async Task<int> AnnounceDisabledAsync(Func<IReadOnlyList<Notely.Events.WebhookSubscriptionDisabled>, CancellationToken, Task> publish,
        CancellationToken cancellationToken)
    {
        await using var connection = await Db.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        await using (var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_xact_lock($1)", connection, tx))
        {
            tryLock.Parameters.Add(new() { Value = AnnounceLockKey });
            if (await tryLock.ExecuteScalarAsync(cancellationToken) is not true) return 0;
        }
        var notices = new List<Notely.Events.WebhookSubscriptionDisabled>();
        await using (var select = new NpgsqlCommand("""
            SELECT id, user_id, url, disabled_reason, disabled_at, failing_since, failures_since_success FROM webhook_subscriptions
            WHERE disabled_notice_pending AND deleted_at IS NULL AND disabled_reason IS NOT NULL AND disabled_at IS NOT NULL
            LIMIT 100
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
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            deadline.CancelAfter(AnnounceTimeout);
            await publish(notices, deadline.Token).WaitAsync(deadline.Token);
        }
        await using (var done = new NpgsqlCommand("""
            UPDATE webhook_subscriptions s SET disabled_notice_pending = false
            FROM unnest($1::uuid[], $2::timestamptz[]) AS n(id, disabled_at)
            WHERE s.id = n.id AND s.disabled_at = n.disabled_at
            """, connection, tx))
        {
            done.Parameters.Add(new() { Value = notices.Select(n => n.SubscriptionId).ToArray() });
            done.Parameters.Add(new() { Value = notices.Select(n => n.DisabledAt).ToArray() });
            await done.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
        return notices.Count;
    }
    /// <summary>
    /// Starts a new round of attempts for a failed or cancelled delivery: pending, due now, with
    /// <paramref name="retryCount"/> + 1 more attempts, whose retry schedule starts again at 2 s
    /// (<c>round_first_attempt</c>); due at the database's now. A failed delivery leaves the subscription's
    /// final-state counters (it will be counted again when the new round ends). Returns the status
    /// the delivery had, or null when it does not belong to the subscription; the delivery was
    /// restarted only if that status was failed or cancelled.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    public async Task<string?> RestartAsync(Guid deliveryId, Guid subscriptionId, int retryCount, CancellationToken cancellationToken)
    {
        await using var connection = await Db.OpenConnectionAsync(cancellationToken);
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
                next_retry_at = now(), completed_at = NULL
            WHERE id = $1
            """, connection, tx))
        {
            AddParameters(restart, deliveryId, retryCount);
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
    /// ran out (see <see cref="LaneStore.DeferToBacklogAsync"/>) are made due now and returned, to be
    /// re-published: at most <paramref name="batchSize"/> of each; of an ordered key only its head
    /// (<see cref="OrderingGate"/>): the rest follow it (<see cref="OrderingSuccessors"/>). Safe to run in several
    /// processes at once (SKIP LOCKED). What <paramref name="self"/> claimed or holds is never
    /// taken for a dead dispatcher's, whatever its heartbeat row says: the process running this
    /// pass is alive, and its heartbeat lapses only because the database was away (a lapse no
    /// longer than the outage that caused it), so its own attempts in flight, whose answers it may
    /// keep in memory, end only by their record, or by their lease (the attempt's timeout + 30 s,
    /// subject to <paramref name="settle"/> like any lease). After such a gap every heartbeat has
    /// lapsed with the database, so a hold of another dispatcher counts as its death only once
    /// passes have run again for <paramref name="grace"/> (or <paramref name="settle"/>, if shorter):
    /// the replicas still running renew theirs meanwhile, and keep what waits in their lanes.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    /// <param name="self">The dispatcher running the pass (<see cref="DispatcherIdentity"/>).</param>
    /// <param name="grace">How long past due a delivery may be before it counts as lost.</param>
    /// <param name="batchSize">Deliveries re-published per pass at most, of each kind.</param>
    /// <param name="gap">Passes further apart than this mean the database (or every dispatcher) was away.</param>
    /// <param name="settle">How long passes must have run again since such a gap before attempts are given back.</param>
    /// <param name="cancellationToken">Cancels the pass.</param>
    public async Task<IReadOnlyList<DeliveryWork>> ReclaimOverdueAsync(Guid self, TimeSpan grace, int batchSize, TimeSpan gap, TimeSpan settle,
        CancellationToken cancellationToken)
    {
        // After a gap, how long passes run again before another dispatcher's lapsed heartbeat means
        // its death: the grace (the heartbeat's lifetime), or the settle time if shorter.
        var renewal = grace < settle ? grace : settle;
        await using var batch = Db.CreateBatch();
        // Passes leave their time in one shared row. After a gap (the database was down, or no
        // dispatcher ran), lost attempts are given back only once passes have run again for
        // `settle`: a process that kept an answer in memory through the outage records it within
        // seconds of the database's return, and must win against the give-back.
        batch.BatchCommands.Add(Command("""
            INSERT INTO webhook_reconciler_state AS r (id, last_pass_at, up_since) VALUES (1, now(), now())
            ON CONFLICT (id) DO UPDATE
            SET up_since = CASE WHEN r.last_pass_at < now() - $1 * interval '1 second' THEN now() ELSE r.up_since END,
                last_pass_at = GREATEST(r.last_pass_at, now())
            """, gap.TotalSeconds));
        // A claimed attempt never recorded is given back (made again, not counted), unless it was
        // lost MaxLostAttempts times in a row: then the delivery fails with a recorded "lost"
        // attempt and counts as failed, so an attempt that kills the process cannot loop forever.
        batch.BatchCommands.Add(Command("""
            WITH lost AS (
                SELECT d.id, d.subscription_id, d.lost_attempts + 1 AS times,
                       (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)::int AS recorded
                FROM webhook_deliveries d
                WHERE d.in_flight AND d.status IN ('pending', 'retrying')
                  -- The lease ran out, or the dispatcher that claimed it (held_by) stopped its
                  -- heartbeat: another one ($4 is this pass's own, alive whatever its row says).
                  AND (d.next_retry_at < now() - make_interval(secs => $1)
                       OR (d.held_by IS NOT NULL AND d.held_by <> $4 AND d.last_attempt_at < now() - make_interval(secs => $1) AND NOT EXISTS (
                               SELECT 1 FROM webhook_dispatchers h WHERE h.id = d.held_by AND h.alive_until >= now())))
                  AND (SELECT up_since FROM webhook_reconciler_state WHERE id = 1) <= now() - $3 * interval '1 second'
                FOR UPDATE SKIP LOCKED),
            poisoned AS (
                INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, outcome, error_message)
                SELECT id, recorded + 1, now(), 0, 'lost', format('The dispatcher stopped during this attempt %s times in a row; not tried again', times)
                FROM lost WHERE times >= $2
                ON CONFLICT DO NOTHING),
            given AS (
                UPDATE webhook_deliveries d
                SET attempt_count = CASE WHEN l.times >= $2 THEN l.recorded + 1 ELSE l.recorded END,
                    lost_attempts = l.times,
                    in_flight = false,
                    status = CASE WHEN l.times >= $2 THEN 'failed' ELSE d.status END,
                    completed_at = CASE WHEN l.times >= $2 THEN now() ELSE d.completed_at END,
                    -- Due since its claim (a lease still running ends here too), so it is re-published below.
                    next_retry_at = CASE WHEN l.times >= $2 THEN NULL ELSE LEAST(d.next_retry_at, d.last_attempt_at) END,
                    response_status_code = CASE WHEN l.times >= $2 THEN NULL ELSE d.response_status_code END,
                    error_message = CASE WHEN l.times >= $2
                                         THEN format('The dispatcher stopped during this attempt %s times in a row; not tried again', l.times)
                                         ELSE d.error_message END
                FROM lost l WHERE d.id = l.id
                RETURNING d.subscription_id, l.times >= $2 AS failed)
            UPDATE webhook_subscriptions s
            SET total_deliveries = s.total_deliveries + g.n, failed_deliveries = s.failed_deliveries + g.n,
                last_delivery_at = GREATEST(s.last_delivery_at, now()), last_failure_at = GREATEST(s.last_failure_at, now())
            FROM (SELECT subscription_id, count(*) AS n FROM given WHERE failed GROUP BY subscription_id) g
            WHERE s.id = g.subscription_id
            """, grace.TotalSeconds, options.Value.MaxLostAttempts, settle.TotalSeconds, self));
        batch.BatchCommands.Add(Command($"""
            UPDATE webhook_deliveries SET next_retry_at = now(), held_by = NULL
            WHERE id IN (SELECT d.id FROM webhook_deliveries d
                         WHERE d.status IN ('pending', 'retrying') AND d.next_retry_at < now() - make_interval(secs => $1)
                           AND d.attempt_count < d.max_attempts
                           AND (d.held_until IS NULL OR d.held_until < now())
                           AND (d.held_by IS NULL OR (d.held_by <> $3 AND NOT EXISTS (
                                    SELECT 1 FROM webhook_dispatchers h WHERE h.id = d.held_by AND h.alive_until >= now())
                                AND (SELECT up_since FROM webhook_reconciler_state WHERE id = 1) <= now() - make_interval(secs => $4)))
                           AND NOT d.in_flight
                           -- Of an ordered key only its head (decision 0014): those behind it wait for it, not for a re-publish.
                           AND {OrderingGate.IsHeadOf("(SELECT s.ordering FROM webhook_subscriptions s WHERE s.id = d.subscription_id)")}
                         ORDER BY d.next_retry_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id, subscription_id
            """, grace.TotalSeconds, batchSize, self, renewal.TotalSeconds));
        // A backlog whose hold ran out: the replica that held it has stopped.
        // (Here and above: after a gap every heartbeat has lapsed with the database; the replicas
        // still running renew theirs within a second or two of its return, so a hold counts as
        // its dispatcher's death only once passes have run again for `renewal`.)
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries SET next_retry_at = now(), held_by = NULL
            WHERE id IN (SELECT d.id FROM webhook_deliveries d
                         WHERE d.status IN ('pending', 'retrying') AND d.next_retry_at IS NULL
                           AND (d.held_until IS NULL OR d.held_until < now())
                           AND (d.held_by IS NULL OR (d.held_by <> $2 AND NOT EXISTS (
                                    SELECT 1 FROM webhook_dispatchers h WHERE h.id = d.held_by AND h.alive_until >= now())
                                AND (SELECT up_since FROM webhook_reconciler_state WHERE id = 1) <= now() - make_interval(secs => $3)))
                         LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING id, subscription_id
            """, batchSize, self, renewal.TotalSeconds));
        var work = new List<DeliveryWork>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        do
        {
            while (await reader.ReadAsync(cancellationToken))
                work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        } while (await reader.NextResultAsync(cancellationToken));
        return work;
    }
}
