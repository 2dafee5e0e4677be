using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The SQL of ordered delivery beyond the claim's gate (<see cref="OrderingGate"/>): a key's next
/// delivery once one of it finished, and the waiting deliveries a subscription releases when its
/// ordering is turned off.
/// </summary>
public sealed class OrderingStore(NpgsqlDataSource db) : StageStore(db)
{
    /// <summary>Deliveries <see cref="WaitingAsync"/> returns at most; the reconciler re-publishes the rest.</summary>
    public const int MaxReleased = 1000;

    /// <summary>
    /// For the ordered deliveries among <paramref name="finishedIds"/> (just recorded in a final
    /// state, committed), the head of each of their keys: the unfinished delivery of the same
    /// subscription and key with the earliest (occurred_at, id), when it is not in flight and is
    /// due. Returned with how long it still has to settle (zero or more, on the database's clock),
    /// to be offered to the scheduler then. With batches (decision 0015) also the subscription's
    /// earliest unfinished batch (it may have waited for this key), and after a batch the head of
    /// every key of its subscription (single deliveries may have waited for it: batching turned
    /// off). The claim's gate (<see cref="OrderingGate"/>) decides; a head offered too early is
    /// refused there. Run after the record's commit, as its own statement, so
    /// a successor whose claim was refused while the record was under way is seen. The heads it
    /// returns are made due now (those due already), so the reconciler, which re-publishes what has
    /// been due for longer than its grace, leaves a head alone that waited its turn and is being
    /// handed on.
    /// </summary>
    /// <param name="finishedIds">Deliveries that reached a final state.</param>
    /// <param name="settle">The settle time (<see cref="DeliveryOptions.OrderingSettleMilliseconds"/>).</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed (the reconciler re-publishes the heads later).</exception>
    public async Task<IReadOnlyList<(DeliveryWork Work, TimeSpan SettlesIn)>> NextOfKeysAsync(IReadOnlyCollection<Guid> finishedIds, TimeSpan settle,
        CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            WITH f AS (
                SELECT DISTINCT subscription_id, ordering_key, batch_size IS NOT NULL AS batch FROM webhook_deliveries
                WHERE id = ANY ($1) AND ordering_key IS NOT NULL),
            k AS (
                SELECT subscription_id, ordering_key FROM f
                UNION
                SELECT d.subscription_id, d.ordering_key FROM (SELECT DISTINCT subscription_id FROM f WHERE batch) fb
                JOIN webhook_deliveries d ON d.subscription_id = fb.subscription_id AND d.ordering_key IS NOT NULL
                                          AND d.status IN ('pending', 'retrying')),
            h AS (
                SELECT h.* FROM k CROSS JOIN LATERAL (
                    SELECT d.id, d.subscription_id, d.created_at, d.in_flight, d.next_retry_at, d.batch_size FROM webhook_deliveries d
                    WHERE d.subscription_id = k.subscription_id AND d.ordering_key = k.ordering_key AND d.status IN ('pending', 'retrying')
                    ORDER BY d.occurred_at, d.id
                    LIMIT 1) h
                UNION
                SELECT b.* FROM (SELECT DISTINCT subscription_id FROM f) fs CROSS JOIN LATERAL (
                    SELECT d.id, d.subscription_id, d.created_at, d.in_flight, d.next_retry_at, d.batch_size FROM webhook_deliveries d
                    WHERE d.subscription_id = fs.subscription_id AND d.batch_size IS NOT NULL AND d.ordering_key IS NOT NULL
                      AND d.status IN ('pending', 'retrying')
                    ORDER BY d.occurred_at, d.id
                    LIMIT 1) b),
            heads AS (
                SELECT h.id, h.subscription_id,
                       CASE WHEN h.batch_size IS NOT NULL THEN 0 ELSE GREATEST(0, extract(epoch FROM h.created_at + make_interval(secs => $2) - now())) END::float8 AS settles_in
                FROM h
                WHERE NOT h.in_flight AND (h.next_retry_at IS NULL OR h.next_retry_at <= now() + make_interval(secs => $3))),
            -- Due from now: a head that waited its turn for longer than the reconciler's grace is not
            -- lost, and must not be re-published while it is handed on (a false alarm in the runbook).
            fresh AS (
                UPDATE webhook_deliveries d SET next_retry_at = now()
                FROM heads WHERE d.id = heads.id AND d.next_retry_at < now() AND NOT d.in_flight AND d.status IN ('pending', 'retrying'))
            SELECT id, subscription_id, settles_in FROM heads
            """);
        AddParameters(cmd, finishedIds.ToArray(), settle.TotalSeconds, LaneStore.EarlyToleranceSeconds);
        return await ReadHeadsAsync(cmd, cancellationToken);
    }

    /// <summary>
    /// Ordered deliveries of <paramref name="subscriptionId"/> waiting to start (unfinished, not in
    /// flight, due), oldest first, at most <see cref="MaxReleased"/>: when its ordering is turned
    /// off they may start at once, and are published for that.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyList<Guid>> WaitingAsync(Guid subscriptionId, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            SELECT id FROM webhook_deliveries
            WHERE subscription_id = $1 AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying') AND NOT in_flight
              AND next_retry_at <= now() + make_interval(secs => $3)
            ORDER BY occurred_at, id
            LIMIT $2
            """);
        AddParameters(cmd, subscriptionId, MaxReleased, LaneStore.EarlyToleranceSeconds);
        var ids = new List<Guid>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            ids.Add(reader.GetGuid(0));
        return ids;
    }

    private static async Task<IReadOnlyList<(DeliveryWork, TimeSpan)>> ReadHeadsAsync(NpgsqlCommand cmd, CancellationToken cancellationToken)
    {
        var heads = new List<(DeliveryWork, TimeSpan)>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            heads.Add((new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)), TimeSpan.FromSeconds(reader.GetDouble(2))));
        return heads;
    }
}
