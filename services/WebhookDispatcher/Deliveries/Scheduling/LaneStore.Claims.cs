using Microsoft.Extensions.Caching.Memory;
using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>The claim: the statements that start attempts (one per pass, ordered deliveries through the gate), and the bodies they carry.</summary>
public sealed partial class LaneStore
{
    /// <summary>
    /// Starts the next attempt of each delivery that is unfinished, due, has attempts left and
    /// whose subscription is active: increments <c>attempt_count</c> and leases the delivery until
    /// the attempt's timeout plus <see cref="LeaseMarginSeconds"/> (so no second claim can start
    /// meanwhile), and only when no earlier claim is still unrecorded (that ends only by the
    /// reconciler's give-back). Every time here is the database's (<c>now()</c>), so replicas whose
    /// clocks disagree agree on what is due and when a lease ends; the claim time, stored as
    /// <c>last_attempt_at</c>, is also the claim's token (<see cref="ClaimedDelivery.ClaimedAt"/>).
    /// Deliveries whose subscription is inactive or deleted are cancelled. An ordered delivery
    /// (decision 0014) starts only when it is its key's head and has settled (<see cref="OrderingGate.MayStart"/>);
    /// one refused while it settles is offered again once it has. Returns the claimed
    /// ones; the others must not be attempted (final, duplicate message, early, cancelled, not their key's turn).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing was claimed.</exception>
    public async Task<IReadOnlyList<ClaimedDelivery>> ClaimAsync(IReadOnlyCollection<Guid> deliveryIds, CancellationToken cancellationToken)
    {
        var ids = deliveryIds.ToArray();
        var rows = new List<(ClaimedDelivery Claim, string? Payload, Guid? PayloadId)>(ids.Length);
        // Unordered deliveries first, with no gate to plan: the gate's subqueries over every
        // partition cost milliseconds of planning per statement (plans are made per execution).
        await ReadClaimsAsync(ordered: false, ids, rows, cancellationToken);
        if (rows.Count < ids.Length)
        {
            // The rest may be ordered ones (decision 0014): claimed only through the gate.
            var taken = rows.Select(r => r.Claim.Id).ToHashSet();
            await ReadClaimsAsync(ordered: true, [.. ids.Where(id => !taken.Contains(id))], rows, cancellationToken);
        }
        var claimed = await WithBodiesAsync(rows, cancellationToken);
        if (claimed.Count == ids.Length) return claimed;

        // Some could not be claimed (final, not due, a duplicate message, or their subscription is
        // off): those of an inactive or deleted subscription end here as cancelled.
        // The lanes forget the rest; so do this dispatcher's holds on them (a delivery that was not
        // due comes back through its own message, or through the reconciler if that is lost).
        var rest = ids.Except(claimed.Select(c => c.Id)).ToArray();
        await using var batch = Db.CreateBatch();
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries d
            SET status = 'cancelled', completed_at = now(), next_retry_at = NULL, held_until = NULL, held_by = NULL, in_flight = false,
                error_message = COALESCE(d.error_message, 'Subscription disabled')
            FROM webhook_subscriptions s
            WHERE d.id = ANY ($1) AND s.id = d.subscription_id AND (NOT s.is_active OR s.deleted_at IS NOT NULL)
              AND d.status NOT IN ('success', 'failed', 'cancelled') AND NOT d.in_flight
            """, rest));
        batch.BatchCommands.Add(Command("UPDATE webhook_deliveries SET held_by = NULL WHERE id = ANY ($1) AND held_by = $2", rest, dispatcher.Id));
        // Ordered ones refused while they settle are offered again once they have (decision 0014).
        batch.BatchCommands.Add(Command(OrderingGate.Unsettled, rest, _settleSeconds));
        var unsettled = new List<(DeliveryWork, TimeSpan)>();
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
        {
            do
            {
                while (await reader.ReadAsync(cancellationToken))
                    unsettled.Add((new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)), TimeSpan.FromSeconds(Math.Max(reader.GetDouble(2), 0.01))));
            } while (await reader.NextResultAsync(cancellationToken));
        }
        ordering?.Offer(unsettled);
        return claimed;
    }

    private static string ClaimSql(string gate) => $"""
            UPDATE webhook_deliveries d
            SET attempt_count = d.attempt_count + 1,
                first_attempt_at = COALESCE(d.first_attempt_at, now()),
                last_attempt_at = now(),
                next_retry_at = now() + make_interval(secs => s.timeout_seconds + $2),
                held_until = NULL,
                held_by = $5, -- who runs the attempt: once its heartbeat stops, the reconciler need not wait for the lease
                in_flight = true
            FROM webhook_subscriptions s
            WHERE d.id = ANY ($1) AND s.id = d.subscription_id AND s.is_active AND s.deleted_at IS NULL
              AND d.status NOT IN ('success', 'failed', 'cancelled')
              AND d.attempt_count < d.max_attempts
              AND (d.next_retry_at IS NULL OR d.next_retry_at <= now() + make_interval(secs => $3))
              -- No earlier claim still unrecorded: its answer may be in some process's memory (a
              -- database outage); only the reconciler's give-back ends such a claim.
              AND NOT d.in_flight
              AND {gate}
            RETURNING d.id, d.subscription_id, d.event_id, d.event_type,
                      -- Large payloads are read once per event below, not once per delivery.
                      CASE WHEN octet_length(d.payload) <= $4 THEN d.payload END,
                      d.attempt_count, d.max_attempts,
                      s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, s.timeout_seconds, s.rate_limit_per_second,
                      d.last_attempt_at, s.user_id, d.round_first_attempt, d.payload_id,
                      s.headers::text, s.signature_scheme, s.signing_key, s.previous_signing_key, s.template, d.ordering_key IS NOT NULL
            """;

    /// <summary>The claim of deliveries that are not ordered now (no key, or their subscription's ordering is <c>none</c>).</summary>
    private static readonly string ClaimUnorderedSql = ClaimSql("(d.ordering_key IS NULL OR s.ordering = 'none')");

    /// <summary>The claim of ordered deliveries, through the gate (<see cref="OrderingGate.MayStart"/>; <c>$6</c> the settle time in seconds).</summary>
    private static readonly string ClaimOrderedSql = ClaimSql($"d.ordering_key IS NOT NULL AND s.ordering <> 'none' AND {OrderingGate.MayStart("$6")}");

    private async Task ReadClaimsAsync(bool ordered, Guid[] ids, List<(ClaimedDelivery Claim, string? Payload, Guid? PayloadId)> rows,
        CancellationToken cancellationToken)
    {
        await using var claim = Db.CreateCommand(ordered ? ClaimOrderedSql : ClaimUnorderedSql);
        AddParameters(claim, ids, (double)LeaseMarginSeconds, EarlyToleranceSeconds, InlinePayloadBytes, dispatcher.Id);
        if (ordered) claim.Parameters.Add(new() { Value = _settleSeconds });
        await using var r = await claim.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken))
        {
            rows.Add((new ClaimedDelivery(r.GetGuid(0), r.GetFieldValue<DateTimeOffset>(13), r.GetGuid(1), r.GetGuid(2), r.GetString(3), [],
                r.GetInt32(5), r.GetInt32(6), r.GetString(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9),
                r.IsDBNull(10) ? null : r.GetFieldValue<DateTimeOffset>(10), r.GetInt32(11), r.IsDBNull(12) ? null : r.GetInt32(12),
                r.GetString(14), r.IsDBNull(17) ? null : r.GetString(17), r.GetString(18), r.IsDBNull(19) ? null : r.GetString(19),
                r.IsDBNull(20) ? null : r.GetString(20), r.GetInt32(15), r.IsDBNull(21) ? null : r.GetString(21)) { Ordered = r.GetBoolean(22) },
                r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(16) ? null : r.GetGuid(16)));
        }
    }

    /// <summary>
    /// Gives each claim its body: one UTF-8 array per event, shared by its deliveries. Payloads not
    /// returned by the claim are read once per event: from <c>webhook_event_payloads</c> by the
    /// payload's id, or (a large payload stored in the delivery row before payloads were stored
    /// once per event) by one of the event's delivery ids.
    /// </summary>
    private async Task<List<ClaimedDelivery>> WithBodiesAsync(List<(ClaimedDelivery Claim, string? Payload, Guid? PayloadId)> rows,
        CancellationToken cancellationToken)
    {
        var bodies = new Dictionary<Guid, byte[]>();
        var stored = new Dictionary<Guid, Guid>(); // event id -> its payload's id
        var inRow = new Dictionary<Guid, Guid>(); // event id -> one of its delivery ids
        foreach (var (claim, payload, payloadId) in rows)
        {
            if (bodies.ContainsKey(claim.EventId)) continue;
            if (payload is not null) bodies[claim.EventId] = System.Text.Encoding.UTF8.GetBytes(payload);
            else if (payloadId is { } id) stored.TryAdd(claim.EventId, id);
            else inRow.TryAdd(claim.EventId, claim.Id);
        }
        if (stored.Count > 0)
            foreach (var (eventId, payloadId) in stored.ToList())
                if (_payloads.TryGetValue(payloadId, out byte[]? cached) && cached is not null)
                {
                    bodies[eventId] = cached;
                    stored.Remove(eventId);
                }
        if (stored.Count + inRow.Count > 0)
        {
            // As UTF-8 bytes from the server (the database's encoding): no string of 2 bytes a
            // character to make and encode again for each large payload.
            await using var cmd = Db.CreateCommand("""
                SELECT event_id, id, convert_to(payload, 'UTF8') FROM webhook_event_payloads WHERE id = ANY ($1)
                UNION ALL
                SELECT event_id, NULL, convert_to(payload, 'UTF8') FROM webhook_deliveries WHERE id = ANY ($2)
                """);
            cmd.Parameters.Add(new() { Value = stored.Values.ToArray() });
            cmd.Parameters.Add(new() { Value = inRow.Values.ToArray() });
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var body = reader.GetFieldValue<byte[]>(2);
                bodies.TryAdd(reader.GetGuid(0), body);
                if (!reader.IsDBNull(1))
                    _payloads.Set(reader.GetGuid(1), body, new MemoryCacheEntryOptions { Size = body.Length, SlidingExpiration = TimeSpan.FromSeconds(30) });
            }
        }
        var lost = rows.Where(row => !bodies.ContainsKey(row.Claim.EventId)).Select(row => row.Claim.Id).ToArray();
        if (lost.Length > 0)
        {
            // Only an operator's hand (a payload partition or row removed) gets here: such a
            // delivery can never be sent, so it fails now instead of coming back on every lease.
            await using var fail = Db.CreateCommand("""
                UPDATE webhook_deliveries
                SET status = 'failed', completed_at = now(), next_retry_at = NULL, in_flight = false, held_by = NULL,
                    error_message = 'Its payload is gone from webhook_event_payloads: nothing was sent'
                WHERE id = ANY ($1) AND in_flight
                """);
            fail.Parameters.Add(new() { Value = lost });
            await fail.ExecuteNonQueryAsync(cancellationToken);
        }
        return [.. rows.Where(row => bodies.ContainsKey(row.Claim.EventId)).Select(row => row.Claim with { Body = bodies[row.Claim.EventId] })];
    }
}
