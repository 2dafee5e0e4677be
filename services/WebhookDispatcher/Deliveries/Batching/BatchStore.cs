using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>What closing a batch did.</summary>
/// <param name="BatchId">The new batch delivery, to queue in its lane; null when none was formed.</param>
/// <param name="Members">Members it carries (0 when none was formed).</param>
/// <param name="Released">Members handed back as single deliveries (the subscription no longer batches, or is off), to queue in their lane.</param>
public sealed record BatchClosing(Guid? BatchId, int Members, IReadOnlyList<Guid> Released);

/// <summary>
/// The batch stage's SQL: forming a batch from its members (one transaction), handing members back
/// as single deliveries, and the sweep's scan for members left waiting.
/// </summary>
/// <param name="db">The database.</param>
/// <param name="delivery">The settle time of ordered subscriptions (<see cref="DeliveryOptions.OrderingSettleMilliseconds"/>); absent: the default.</param>
public sealed class BatchStore(NpgsqlDataSource db, IOptions<DeliveryOptions>? delivery = null) : StageStore(db)
{
    private readonly TimeSpan _settle = TimeSpan.FromMilliseconds((delivery?.Value ?? new DeliveryOptions()).OrderingSettleMilliseconds);

    /// <summary>
    /// Forms one batch of <paramref name="memberIds"/> for <paramref name="subscriptionId"/> in
    /// one transaction: takes the members still waiting (status <c>batched</c>, no batch yet; a
    /// member another replica put in a batch meanwhile is skipped, the row lock making the two
    /// closes take turns), builds the body from their payloads (<see cref="BatchBody"/>) and stores
    /// the batch as a delivery of its own: its own UUIDv7 id (also its <c>event_id</c>, so its
    /// <c>webhook-id</c>), <c>event_type</c> <c>batch</c>, the exact body as its payload (in
    /// <c>webhook_event_payloads</c> when large, decision 0009), <c>batch_size</c>, attempts from the
    /// subscription's retry count, pending and due now. A subscription that is ordered too
    /// (decision 0014) forms its batches in order instead (<see cref="TakeInOrderAsync"/>): its
    /// closes take turns (an advisory lock per subscription, across replicas), each takes the
    /// subscription's waiting members in (occurred_at, id) order, whichever process buffered them,
    /// and the batch gets the key <c>''</c> and the time it was formed as its occurred_at, so its
    /// batches go one at a time in the order they were formed. When the subscription no longer batches (or
    /// is disabled or deleted) all its waiting members, whichever process buffered them, become
    /// ordinary pending deliveries instead, due now, as in <see cref="ReleaseWaitingAsync"/> (the
    /// scheduler's claim cancels those of a subscription that is off).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed (the members wait for the sweep).</exception>
    public async Task<BatchClosing> CloseAsync(Guid subscriptionId, IReadOnlyList<Guid> memberIds, CancellationToken cancellationToken)
    {
        var ids = memberIds.ToArray();
        await using var connection = await Db.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        int retryCount, maxEvents, maxBytes;
        bool batching, ordered;
        Guid batchId;
        DateTimeOffset now;
        await using (var read = new NpgsqlCommand("""
            SELECT s.retry_count, s.batch_max_events IS NOT NULL AND s.is_active AND s.deleted_at IS NULL, webhook_uuid_v7(), now(),
                   s.ordering <> 'none', COALESCE(s.batch_max_events, 1), COALESCE(s.batch_max_bytes, 0)
            FROM webhook_subscriptions s WHERE s.id = $1
            """, connection, tx))
        {
            AddParameters(read, subscriptionId);
            await using var r = await read.ExecuteReaderAsync(cancellationToken);
            if (!await r.ReadAsync(cancellationToken)) return new BatchClosing(null, 0, []);
            (retryCount, batching, batchId, now) = (r.GetInt32(0), r.GetBoolean(1), r.GetGuid(2), r.GetFieldValue<DateTimeOffset>(3));
            (ordered, maxEvents, maxBytes) = (r.GetBoolean(4), r.GetInt32(5), r.GetInt32(6));
        }
        if (!batching)
        {
            var released = await ReleaseWaitingAsync(tx, subscriptionId, cancellationToken);
            await tx.CommitAsync(cancellationToken);
            return new BatchClosing(null, 0, released);
        }

        var members = new List<(Guid DeliveryId, string Payload)>(ids.Length);
        var gone = new List<Guid>();
        if (ordered) await TakeInOrderAsync(connection, tx, subscriptionId, batchId, maxEvents, maxBytes, members, gone, cancellationToken);
        else await using (var take = new NpgsqlCommand("""
            UPDATE webhook_deliveries d SET batch_id = $2
            WHERE d.id = ANY ($1) AND d.subscription_id = $3 AND d.status = 'batched' AND d.batch_id IS NULL
            RETURNING d.id, COALESCE(d.payload, (SELECT p.payload FROM webhook_event_payloads p WHERE p.id = d.payload_id))
            """, connection, tx))
        {
            AddParameters(take, ids, batchId, subscriptionId);
            await using var r = await take.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
                if (r.IsDBNull(1)) gone.Add(r.GetGuid(0));
                else members.Add((r.GetGuid(0), r.GetString(1)));
        }
        if (gone.Count > 0)
        {
            // Only an operator's hand removes a payload that deliveries still need: such a member can never be sent.
            await using var fail = new NpgsqlCommand("""
                UPDATE webhook_deliveries SET status = 'failed', completed_at = now(), batch_id = NULL,
                    error_message = 'Its payload is gone from webhook_event_payloads: nothing was sent'
                WHERE id = ANY ($1)
                """, connection, tx);
            AddParameters(fail, gone.ToArray());
            await fail.ExecuteNonQueryAsync(cancellationToken);
        }
        if (members.Count == 0)
        {
            await tx.CommitAsync(cancellationToken);
            return new BatchClosing(null, 0, []);
        }

        var body = BatchBody.Build(batchId, now, members, inGivenOrder: ordered);
        var separate = EventPayloads.StoredOncePerEvent(body);
        await using (var insert = new NpgsqlCommand($"""
            WITH p AS (
                INSERT INTO webhook_event_payloads (id, event_id, payload)
                SELECT webhook_uuid_v7(), $1, $3 WHERE $6
                RETURNING id)
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, payload_id, status, attempt_count, max_attempts,
                                            created_at, next_retry_at, in_flight, batch_size, ordering_key, occurred_at)
            VALUES ($1, $2, '{BatchBody.EventType}', $1, CASE WHEN $6 THEN NULL ELSE $3 END, (SELECT id FROM p), 'pending', 0, 1 + $4,
                    now(), now(), false, $5, CASE WHEN $7 THEN '' END,
                    -- As late as its latest event (decision 0015): a single delivery of an event after
                    -- those waits for the batch, whenever the batch was formed.
                    CASE WHEN $7 THEN COALESCE((SELECT max(m.occurred_at) FROM webhook_deliveries m WHERE m.batch_id = $1), clock_timestamp()) END)
            """, connection, tx))
        {
            AddParameters(insert, batchId, subscriptionId, body, retryCount, members.Count, separate, ordered);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
        return new BatchClosing(batchId, members.Count, []);
    }

    /// <summary>
    /// Turns the members of <paramref name="subscriptionId"/> still waiting for a batch (status
    /// <c>batched</c>, no batch yet) into single pending deliveries, due now, in the caller's
    /// transaction <paramref name="transaction"/> (the one that turns its batching off). Returns their ids.
    /// A process that still buffers them finds them gone when it closes their batch.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task<IReadOnlyList<Guid>> ReleaseWaitingAsync(System.Data.Common.DbTransaction transaction, Guid subscriptionId,
        CancellationToken cancellationToken)
    {
        await using var release = new NpgsqlCommand("""
            UPDATE webhook_deliveries SET status = 'pending', next_retry_at = now()
            WHERE subscription_id = $1 AND status = 'batched' AND batch_id IS NULL
            RETURNING id
            """, (NpgsqlConnection)transaction.Connection!, (NpgsqlTransaction)transaction);
        release.Parameters.Add(new() { Value = subscriptionId });
        var released = new List<Guid>();
        await using var r = await release.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken)) released.Add(r.GetGuid(0));
        return released;
    }

    /// <summary>
    /// Takes into <paramref name="batchId"/> the waiting members of an ordered subscription, in
    /// (occurred_at, id) order: the longest run from the first that have all settled (stored
    /// <see cref="DeliveryOptions.OrderingSettleMilliseconds"/> ago; an earlier event still
    /// settling holds back those after it, as the claim's gate does), at most
    /// <paramref name="maxEvents"/> and <paramref name="maxBytes"/> (one member at least). Closes of
    /// one subscription take turns (a transaction-scoped advisory lock), so its batches are formed
    /// one after another whichever replica forms them. Members whose payload is gone go to
    /// <paramref name="gone"/>. Members of this process's buffer not taken wait for the
    /// subscription's next close, or for the sweep.
    /// </summary>
    private async Task TakeInOrderAsync(NpgsqlConnection connection, NpgsqlTransaction tx, Guid subscriptionId, Guid batchId, int maxEvents,
        int maxBytes, List<(Guid DeliveryId, string Payload)> members, List<Guid> gone, CancellationToken cancellationToken)
    {
        await using (var turn = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 15))", connection, tx))
        {
            AddParameters(turn, subscriptionId);
            await turn.ExecuteNonQueryAsync(cancellationToken);
        }
        var taken = new List<Guid>();
        await using (var read = new NpgsqlCommand("""
            SELECT d.id, COALESCE(d.payload, (SELECT p.payload FROM webhook_event_payloads p WHERE p.id = d.payload_id)),
                   d.created_at <= statement_timestamp() - make_interval(secs => $2)
            FROM webhook_deliveries d
            WHERE d.subscription_id = $1 AND d.status = 'batched' AND d.batch_id IS NULL
            ORDER BY d.occurred_at, d.id
            LIMIT $3
            FOR UPDATE
            """, connection, tx))
        {
            AddParameters(read, subscriptionId, _settle.TotalSeconds, maxEvents);
            await using var r = await read.ExecuteReaderAsync(cancellationToken);
            long bytes = 0;
            while (await r.ReadAsync(cancellationToken))
            {
                if (!r.GetBoolean(2)) break;
                if (r.IsDBNull(1))
                {
                    gone.Add(r.GetGuid(0));
                    continue;
                }
                var payload = r.GetString(1);
                var size = System.Text.Encoding.UTF8.GetByteCount(payload);
                if (members.Count > 0 && BatchBody.Size(bytes + size, members.Count + 1) > maxBytes) break;
                members.Add((r.GetGuid(0), payload));
                taken.Add(r.GetGuid(0));
                bytes += size;
            }
        }
        if (taken.Count == 0) return;
        await using var mark = new NpgsqlCommand("UPDATE webhook_deliveries SET batch_id = $2 WHERE id = ANY ($1)", connection, tx);
        AddParameters(mark, taken.ToArray(), batchId);
        await mark.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// The sweep: members waiting for a batch (status <c>batched</c>, no batch) for longer than
    /// their subscription's <c>batch_max_wait_ms</c> plus <paramref name="grace"/>, oldest first, at
    /// most <paramref name="limit"/>, with their payload sizes and their subscription's limits
    /// (<see cref="BatchLimits.Immediate"/> when it no longer batches). Such members were left by a
    /// dispatcher that stopped or died before it formed their batch, by a redelivered event, or by
    /// a process whose buffers were full. Reads only; forming is safe against other replicas.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyList<BatchMember>> FindLeftAsync(TimeSpan grace, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            SELECT d.id, d.subscription_id,
                   COALESCE(octet_length(d.payload), (SELECT octet_length(p.payload) FROM webhook_event_payloads p WHERE p.id = d.payload_id), 0),
                   s.batch_max_events, s.batch_max_wait_ms, s.batch_max_bytes
            FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
            WHERE d.status = 'batched' AND d.batch_id IS NULL
              AND d.created_at < now() - make_interval(secs => COALESCE(s.batch_max_wait_ms, 0) / 1000.0 + $1)
            ORDER BY d.created_at
            LIMIT $2
            """);
        AddParameters(cmd, grace.TotalSeconds, limit);
        var found = new List<BatchMember>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken))
            found.Add(new BatchMember(r.GetGuid(0), r.GetGuid(1), r.GetInt32(2),
                r.IsDBNull(3) ? BatchLimits.Immediate : new BatchLimits(r.GetInt32(3), r.GetInt32(4), r.GetInt32(5))));
        return found;
    }
}
