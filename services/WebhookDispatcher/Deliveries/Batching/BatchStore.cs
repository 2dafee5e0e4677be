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
public sealed class BatchStore(NpgsqlDataSource db) : StageStore(db)
{
    /// <summary>
    /// Forms one batch of <paramref name="memberIds"/> for <paramref name="subscriptionId"/> in
    /// one transaction: takes the members still waiting (status <c>batched</c>, no batch yet; a
    /// member another replica put in a batch meanwhile is skipped, the row lock making the two
    /// closes take turns), builds the body from their payloads (<see cref="BatchBody"/>) and stores
    /// the batch as a delivery of its own: its own UUIDv7 id (also its <c>event_id</c>, so its
    /// <c>webhook-id</c>), <c>event_type</c> <c>batch</c>, the exact body as its payload (in
    /// <c>webhook_event_payloads</c> when large, decision 0009), <c>batch_size</c>, attempts from the
    /// subscription's retry count, pending and due now. When the subscription no longer batches (or
    /// is disabled or deleted) the members become ordinary pending deliveries instead, due now (the
    /// scheduler's claim cancels those of a subscription that is off).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed (the members wait for the sweep).</exception>
    public async Task<BatchClosing> CloseAsync(Guid subscriptionId, IReadOnlyList<Guid> memberIds, CancellationToken cancellationToken)
    {
        var ids = memberIds.ToArray();
        await using var connection = await Db.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        int retryCount;
        bool batching;
        Guid batchId;
        DateTimeOffset now;
        await using (var read = new NpgsqlCommand("""
            SELECT s.retry_count, s.batch_max_events IS NOT NULL AND s.is_active AND s.deleted_at IS NULL, webhook_uuid_v7(), now()
            FROM webhook_subscriptions s WHERE s.id = $1
            """, connection, tx))
        {
            AddParameters(read, subscriptionId);
            await using var r = await read.ExecuteReaderAsync(cancellationToken);
            if (!await r.ReadAsync(cancellationToken)) return new BatchClosing(null, 0, []);
            (retryCount, batching, batchId, now) = (r.GetInt32(0), r.GetBoolean(1), r.GetGuid(2), r.GetFieldValue<DateTimeOffset>(3));
        }
        if (!batching)
        {
            var released = new List<Guid>(ids.Length);
            await using (var release = new NpgsqlCommand("""
                UPDATE webhook_deliveries SET status = 'pending', next_retry_at = now()
                WHERE id = ANY ($1) AND status = 'batched' AND batch_id IS NULL
                RETURNING id
                """, connection, tx))
            {
                AddParameters(release, ids);
                await using var r = await release.ExecuteReaderAsync(cancellationToken);
                while (await r.ReadAsync(cancellationToken)) released.Add(r.GetGuid(0));
            }
            await tx.CommitAsync(cancellationToken);
            return new BatchClosing(null, 0, released);
        }

        var members = new List<(Guid DeliveryId, string Payload)>(ids.Length);
        var gone = new List<Guid>();
        await using (var take = new NpgsqlCommand("""
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

        var body = BatchBody.Build(batchId, now, members);
        var separate = EventPayloads.StoredOncePerEvent(body);
        await using (var insert = new NpgsqlCommand($"""
            WITH p AS (
                INSERT INTO webhook_event_payloads (id, event_id, payload)
                SELECT webhook_uuid_v7(), $1, $3 WHERE $6
                RETURNING id)
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, payload_id, status, attempt_count, max_attempts,
                                            created_at, next_retry_at, in_flight, batch_size)
            VALUES ($1, $2, '{BatchBody.EventType}', $1, CASE WHEN $6 THEN NULL ELSE $3 END, (SELECT id FROM p), 'pending', 0, 1 + $4,
                    now(), now(), false, $5)
            """, connection, tx))
        {
            AddParameters(insert, batchId, subscriptionId, body, retryCount, members.Count, separate);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
        return new BatchClosing(batchId, members.Count, []);
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
