using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>The fan-out's SQL: one insert-or-skip statement for a batch of events, and the users' subscription counts that decide how events are batched.</summary>
public sealed class FanOutStore(NpgsqlDataSource db) : StageStore(db)
{
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
    /// The fan-out statement, one per variant: <paramref name="maybeSeen"/> looks for existing
    /// deliveries in the last <see cref="DedupDays"/> days ($9 ≤ id &lt; $10) and returns again
    /// those never attempted (<c>existing</c> reads the snapshot from before the INSERT);
    /// <paramref name="separate"/> carries a flag per event (the last parameter) saying its payload
    /// is stored once per event: such a payload gets one row in <c>webhook_event_payloads</c> when
    /// the event makes at least one new delivery, and its deliveries point at it. The payload row
    /// is made before the deliveries that join it, so its id (the database's clock) is never later
    /// than theirs, and retention keeps a payload day while the next day's deliveries live (see
    /// <see cref="Data.HistoryRetention"/>). Every variant claims at insert the first deliveries of
    /// each subscription granted room ($5 subscriptions, $6 rooms; see <see cref="ClaimGrant"/>):
    /// such a row is written as the claim would leave it (<see cref="LaneStore.ClaimAsync"/>), so
    /// its attempt needs no second statement, and comes back with what the attempt needs.
    /// </summary>
    private static string FanOutSql(bool maybeSeen, bool separate)
    {
        var separateParameter = maybeSeen ? "$11" : "$9";
        // The events' occurred_at and ordering keys (decision 0014) come last.
        var ordering = 9 + (maybeSeen ? 2 : 0) + (separate ? 1 : 0);
        var orderingColumns = $"${ordering}::timestamptz[], ${ordering + 1}::text[]";
        var events = separate
            ? $"unnest($1::uuid[], $2::text[], $3::text[], $4::text[], {separateParameter}::boolean[], {orderingColumns}) WITH ORDINALITY AS e(event_id, user_id, event_type, payload, separate, occurred_at, ordering_key, ord)"
            : $"unnest($1::uuid[], $2::text[], $3::text[], $4::text[], {orderingColumns}) WITH ORDINALITY AS e(event_id, user_id, event_type, payload, occurred_at, ordering_key, ord)";
        var newOnes = maybeSeen
            ? """
              existing AS (
                  SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempt_count
                  FROM m JOIN webhook_deliveries d
                    ON d.subscription_id = m.subscription_id AND d.event_id = m.event_id AND d.id >= $9 AND d.id < $10),
              n AS (
                  SELECT * FROM m
                  WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.subscription_id = m.subscription_id AND x.event_id = m.event_id)),
              """
            : "n AS (SELECT * FROM m),";
        var payloadRows = separate
            ? """
              p AS (
                  INSERT INTO webhook_event_payloads (id, event_id, payload)
                  SELECT webhook_uuid_v7(), e.event_id, e.payload FROM e
                  WHERE e.separate AND EXISTS (SELECT 1 FROM n WHERE n.event_id = e.event_id)
                  RETURNING id, event_id),
              """
            : "";
        return $"""
            WITH e AS (SELECT * FROM {events}),
            m AS (
                SELECT e.event_id, e.event_type, {(separate ? "e.separate" : "false AS separate")}, s.id AS subscription_id, s.retry_count,
                       s.timeout_seconds, s.ordering, e.occurred_at, e.ordering_key, s.batch_max_events IS NOT NULL AS batched,
                       s.ordering = 'none' AND s.batch_max_events IS NULL AND row_number() OVER (PARTITION BY s.id ORDER BY e.ord) <= COALESCE(a.room, 0) AS claimed
                FROM e JOIN webhook_subscriptions s
                  ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)
                     AND (s.filter_path IS NULL OR e.payload::jsonb @@ s.filter_path)
                LEFT JOIN unnest($5::uuid[], $6::int[]) AS a(subscription_id, room) ON a.subscription_id = s.id),
            {newOnes}
            {payloadRows}
            ins AS (
                INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, payload_id, status, attempt_count,
                                                max_attempts, created_at, first_attempt_at, last_attempt_at, next_retry_at, held_by, in_flight,
                                                ordering_key, occurred_at)
                -- Ordered ones (decision 0014) are never claimed at insert (m.claimed): they wait for their settle time and their key's turn.
                SELECT webhook_uuid_v7(), n.subscription_id, n.event_type, n.event_id, CASE WHEN n.separate THEN NULL ELSE e.payload END,
                       {(separate ? "p.id" : "NULL::uuid")}, CASE WHEN n.batched THEN 'batched' ELSE 'pending' END,
                       CASE WHEN n.claimed THEN 1 ELSE 0 END, 1 + n.retry_count, now(),
                       CASE WHEN n.claimed THEN now() END, CASE WHEN n.claimed THEN now() END,
                       -- A batch member has no due time (its batch has): the reconciler's due scan never sees it.
                       CASE WHEN n.claimed THEN now() + make_interval(secs => n.timeout_seconds + $8) WHEN n.batched THEN NULL ELSE now() END,
                       CASE WHEN n.claimed THEN $7::uuid END, n.claimed,
                       CASE n.ordering WHEN 'none' THEN NULL WHEN 'strict' THEN '' ELSE n.ordering_key END, n.occurred_at
                FROM n JOIN e ON e.event_id = n.event_id {(separate ? "LEFT JOIN p ON p.event_id = n.event_id" : "")}
                ON CONFLICT DO NOTHING
                RETURNING id, subscription_id, in_flight, event_id, event_type, attempt_count, max_attempts, last_attempt_at, round_first_attempt, ordering_key,
                          status = 'batched' AS batched)
            SELECT ins.id, ins.subscription_id, ins.in_flight, ins.event_id, ins.event_type, ins.attempt_count, ins.max_attempts, ins.last_attempt_at,
                   ins.round_first_attempt, s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, s.timeout_seconds,
                   s.rate_limit_per_second, s.user_id, s.template, s.headers::text, s.signature_scheme, s.signing_key, s.previous_signing_key,
                   ins.ordering_key IS NOT NULL, s.batch_max_events, s.batch_max_wait_ms, s.batch_max_bytes
            FROM ins LEFT JOIN webhook_subscriptions s ON (ins.in_flight OR ins.batched) AND s.id = ins.subscription_id
            {(maybeSeen ? """
                          UNION ALL
                          SELECT id, subscription_id, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false,
                                 NULL, NULL, NULL
                          FROM existing WHERE status = 'pending' AND attempt_count = 0
                          """ : "")}
            """;
    }

    private static readonly string[] Statements =
        [FanOutSql(false, false), FanOutSql(true, false), FanOutSql(false, true), FanOutSql(true, true)];

    /// <summary>
    /// Creates one pending delivery per (event, active subscription of the event's user that
    /// includes its type and whose filter, if any, selects the payload: Shaping/PayloadFilter.cs),
    /// skipping those that exist (unique (subscription_id, event_id)), and
    /// returns the work to attempt: the new deliveries, and, for events that may have been seen
    /// before (<see cref="FanOutEvent.MaybeSeen"/>), those that exist but were never attempted (a
    /// redelivered event after a crash between commit and attempt; otherwise the reconciler
    /// re-publishes them). Claims nothing at insert. The members of batched subscriptions it stores
    /// are not returned (<see cref="FanOutAndClaimAsync"/> returns them): the sweep of the batch stage finds them.
    /// </summary>
    /// <inheritdoc cref="FanOutAndClaimAsync" path="/param"/>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<IReadOnlyList<DeliveryWork>> FanOutAsync(IReadOnlyList<FanOutEvent> events, DateTimeOffset now,
        CancellationToken cancellationToken) =>
        await FanOutAndClaimAsync(events, ClaimGrant.None, Guid.Empty, now, cancellationToken) is var result && result.Settling.Count > 0
            ? [.. result.Work, .. result.Settling] // the claim refuses them until they settled, and offers them again then
            : result.Work;

    /// <summary>
    /// As <see cref="FanOutAsync"/>, and claims at insert, for this dispatcher, the first
    /// deliveries of each subscription in <paramref name="grant"/>, as many as its room: those
    /// come back in <see cref="FanOutResult.Claimed"/>, with the event's payload as their body,
    /// and must be started (or given back) by the scheduler; the rest in <see cref="FanOutResult.Work"/>.
    /// </summary>
    /// <param name="events">Events with distinct ids.</param>
    /// <param name="grant">Room to claim at insert, per subscription (<see cref="ClaimGrant.None"/>: none).</param>
    /// <param name="dispatcherId">The dispatcher that runs the claimed attempts (its heartbeat covers them).</param>
    /// <param name="now">The process's clock, used only to bound the look-back for events seen before
    /// (days, with an hour's margin either side of midnight UTC); the new deliveries are created,
    /// due and leased at the database's <c>now()</c>, the clock of every due time.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<FanOutResult> FanOutAndClaimAsync(IReadOnlyList<FanOutEvent> events, ClaimGrant grant, Guid dispatcherId,
        DateTimeOffset now, CancellationToken cancellationToken)
    {
        // The pair (subscription, event) is unique within each day partition (ON CONFLICT). An
        // event that may have been fanned out before, and near midnight UTC every event, is also
        // looked for in the last DedupDays days, where any redelivery lands, and its deliveries
        // never attempted are returned again (`existing` reads the snapshot from before the
        // INSERT). A first delivery of an event during the day, almost all of them, skips that
        // look: it costs the planner a second pass over the partitions.
        var maybeSeen = events.Any(e => e.MaybeSeen) || NearMidnightUtc(now);
        var separate = events.Any(e => EventPayloads.StoredOncePerEvent(e.Payload));
        await using var cmd = Db.CreateCommand(Statements[(maybeSeen ? 1 : 0) + (separate ? 2 : 0)]);
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.UserId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventType).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.Payload).ToArray() });
        cmd.Parameters.Add(new() { Value = grant.SubscriptionIds });
        cmd.Parameters.Add(new() { Value = grant.Rooms });
        cmd.Parameters.Add(new() { Value = dispatcherId });
        cmd.Parameters.Add(new() { Value = (double)LaneStore.LeaseMarginSeconds });
        if (maybeSeen)
        {
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now - TimeSpan.FromDays(DedupDays)) });
            // Bounded above too, so the (empty) partitions made ahead for the coming days are not planned.
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now + TimeSpan.FromDays(1)) });
        }
        if (separate) cmd.Parameters.Add(new() { Value = events.Select(e => EventPayloads.StoredOncePerEvent(e.Payload)).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.OccurredAt?.ToUniversalTime()).ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.OrderingKey ?? OrderingKeys.Key(Notely.Events.EventTypeInfo.UserKey, e.UserId)).ToArray() });
        var work = new List<DeliveryWork>(events.Count);
        List<DeliveryWork>? settling = null;
        List<ClaimedDelivery>? claimed = null;
        Dictionary<Guid, byte[]>? bodies = null; // event id -> its payload's UTF-8 bytes, shared by its claimed deliveries
        Dictionary<Guid, string>? payloads = null;
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        List<BatchMember>? batched = null;
        while (await r.ReadAsync(cancellationToken))
        {
            if (!r.IsDBNull(22))
            {
                // A member of a batched subscription: for the batch stage, with its size and the subscription's limits as they are now.
                payloads ??= events.ToDictionary(e => e.EventId, e => e.Payload);
                (batched ??= []).Add(new BatchMember(r.GetGuid(0), r.GetGuid(1), System.Text.Encoding.UTF8.GetByteCount(payloads[r.GetGuid(3)]),
                    new BatchLimits(r.GetInt32(22), r.GetInt32(23), r.GetInt32(24)), Ordered: r.GetBoolean(21)));
                continue;
            }
            if (!r.GetBoolean(2))
            {
                if (r.GetBoolean(21)) (settling ??= []).Add(new DeliveryWork(r.GetGuid(0), r.GetGuid(1)));
                else work.Add(new DeliveryWork(r.GetGuid(0), r.GetGuid(1)));
                continue;
            }
            var eventId = r.GetGuid(3);
            bodies ??= [];
            if (!bodies.TryGetValue(eventId, out var body))
            {
                payloads ??= events.ToDictionary(e => e.EventId, e => e.Payload);
                bodies[eventId] = body = System.Text.Encoding.UTF8.GetBytes(payloads[eventId]);
            }
            (claimed ??= []).Add(new ClaimedDelivery(r.GetGuid(0), r.GetFieldValue<DateTimeOffset>(7), r.GetGuid(1), eventId, r.GetString(4), body,
                r.GetInt32(5), r.GetInt32(6), r.GetString(9), r.GetString(10), r.IsDBNull(11) ? null : r.GetString(11),
                r.IsDBNull(12) ? null : r.GetFieldValue<DateTimeOffset>(12), r.GetInt32(13), r.IsDBNull(14) ? null : r.GetInt32(14),
                r.GetString(15), r.IsDBNull(17) ? null : r.GetString(17), r.GetString(18), r.IsDBNull(19) ? null : r.GetString(19),
                r.IsDBNull(20) ? null : r.GetString(20), r.GetInt32(8), r.IsDBNull(16) ? null : r.GetString(16)));
        }
        return new FanOutResult(work, claimed ?? (IReadOnlyList<ClaimedDelivery>)[])
        {
            Settling = settling ?? (IReadOnlyList<DeliveryWork>)[],
            Batched = batched ?? (IReadOnlyList<BatchMember>)[],
        };
    }

    /// <summary>Each user's count of active subscriptions (users with none are absent), for <see cref="FanOutSizes"/>.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyDictionary<string, int>> CountSubscriptionsAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            SELECT user_id, count(*)::int FROM webhook_subscriptions
            WHERE user_id = ANY ($1) AND is_active AND deleted_at IS NULL
            GROUP BY user_id
            """);
        cmd.Parameters.Add(new() { Value = userIds.ToArray() });
        var counts = new Dictionary<string, int>(userIds.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            counts[reader.GetString(0)] = reader.GetInt32(1);
        return counts;
    }
}
