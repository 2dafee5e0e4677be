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

    /// <summary>A first delivery of events seen for the first time, payloads in the delivery rows: one INSERT.</summary>
    private const string FirstSeenSql = """
        WITH e AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS e(event_id, user_id, event_type, payload))
        INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                        created_at, next_retry_at)
        SELECT webhook_uuid_v7(), s.id, e.event_type, e.event_id, e.payload, 'pending', 0, 1 + s.retry_count, now(), now()
        FROM e JOIN webhook_subscriptions s
          ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)
             AND (s.filter_path IS NULL OR e.payload::jsonb @@ s.filter_path)
        ON CONFLICT DO NOTHING
        RETURNING id, subscription_id
        """;

    /// <summary>
    /// Events that may have been fanned out before, payloads in the delivery rows: existing
    /// deliveries are looked for in the last <see cref="DedupDays"/> days ($5 ≤ id &lt; $6), and
    /// those never attempted are returned again (<c>existing</c> reads the snapshot from before the INSERT).
    /// </summary>
    private const string MaybeSeenSql = """
        WITH e AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS e(event_id, user_id, event_type, payload)),
        m AS (
            SELECT e.event_id, e.event_type, e.payload, s.id AS subscription_id, s.retry_count
            FROM e JOIN webhook_subscriptions s
              ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)
                 AND (s.filter_path IS NULL OR e.payload::jsonb @@ s.filter_path)),
        existing AS (
            SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempt_count
            FROM m JOIN webhook_deliveries d
              ON d.subscription_id = m.subscription_id AND d.event_id = m.event_id AND d.id >= $5 AND d.id < $6),
        ins AS (
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                            created_at, next_retry_at)
            SELECT webhook_uuid_v7(), m.subscription_id, m.event_type, m.event_id, m.payload, 'pending', 0, 1 + m.retry_count, now(), now()
            FROM m
            WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.subscription_id = m.subscription_id AND x.event_id = m.event_id)
            ON CONFLICT DO NOTHING
            RETURNING id, subscription_id)
        SELECT id, subscription_id FROM ins
        UNION ALL
        SELECT id, subscription_id FROM existing WHERE status = 'pending' AND attempt_count = 0
        """;

    /// <summary>
    /// A batch with a payload stored once per event (the last parameter says which): such a
    /// payload gets one row in <c>webhook_event_payloads</c> when the event makes at least one
    /// new delivery, and its deliveries point at it. The payload row is made before the
    /// deliveries that join it, so its id (the database's clock) is never later than theirs, and
    /// retention keeps a payload day while the next day's deliveries live (see <see cref="Data.HistoryRetention"/>).
    /// </summary>
    private static readonly string FirstSeenPayloadRowsSql = WithPayloadRows(maybeSeen: false);

    /// <summary>As <see cref="FirstSeenPayloadRowsSql"/>, for events that may have been fanned out before (as <see cref="MaybeSeenSql"/>).</summary>
    private static readonly string MaybeSeenPayloadRowsSql = WithPayloadRows(maybeSeen: true);

    private static string WithPayloadRows(bool maybeSeen)
    {
        const string NewOfMaybeSeen = """
            existing AS (
                SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempt_count
                FROM m JOIN webhook_deliveries d
                  ON d.subscription_id = m.subscription_id AND d.event_id = m.event_id AND d.id >= $5 AND d.id < $6),
            n AS (
                SELECT * FROM m
                WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.subscription_id = m.subscription_id AND x.event_id = m.event_id)),
            """;
        const string NewOfFirstSeen = "n AS (SELECT * FROM m),";
        var separate = maybeSeen ? "$7" : "$5";
        return $"""
            WITH e AS (
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], {separate}::boolean[])
                    AS e(event_id, user_id, event_type, payload, separate)),
            m AS (
                SELECT e.event_id, e.event_type, e.separate, s.id AS subscription_id, s.retry_count
                FROM e JOIN webhook_subscriptions s
                  ON s.user_id = e.user_id AND s.is_active AND s.deleted_at IS NULL AND e.event_type = ANY (s.event_types)
                     AND (s.filter_path IS NULL OR e.payload::jsonb @@ s.filter_path)),
            {(maybeSeen ? NewOfMaybeSeen : NewOfFirstSeen)}
            p AS (
                INSERT INTO webhook_event_payloads (id, event_id, payload)
                SELECT webhook_uuid_v7(), e.event_id, e.payload FROM e
                WHERE e.separate AND EXISTS (SELECT 1 FROM n WHERE n.event_id = e.event_id)
                RETURNING id, event_id),
            ins AS (
                INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, payload_id, status, attempt_count,
                                                max_attempts, created_at, next_retry_at)
                SELECT webhook_uuid_v7(), n.subscription_id, n.event_type, n.event_id, CASE WHEN n.separate THEN NULL ELSE e.payload END,
                       p.id, 'pending', 0, 1 + n.retry_count, now(), now()
                FROM n JOIN e ON e.event_id = n.event_id LEFT JOIN p ON p.event_id = n.event_id
                ON CONFLICT DO NOTHING
                RETURNING id, subscription_id)
            SELECT id, subscription_id FROM ins
            {(maybeSeen ? "UNION ALL SELECT id, subscription_id FROM existing WHERE status = 'pending' AND attempt_count = 0" : "")}
            """;
    }

    /// <summary>
    /// Creates one pending delivery per (event, active subscription of the event's user that
    /// includes its type and whose filter, if any, selects the payload: Shaping/PayloadFilter.cs), skipping those that exist (unique (subscription_id, event_id)), and
    /// returns the work to attempt: the new deliveries, and, for events that may have been seen
    /// before (<see cref="FanOutEvent.MaybeSeen"/>), those that exist but were never attempted (a
    /// redelivered event after a crash between commit and attempt; otherwise the reconciler
    /// re-publishes them).
    /// </summary>
    /// <param name="events">Events with distinct ids.</param>
    /// <param name="now">The process's clock, used only to bound the look-back for events seen before
    /// (days, with an hour's margin either side of midnight UTC); the new deliveries are created
    /// and due at the database's <c>now()</c>, the clock of every due time.</param>
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
        var separate = events.Any(e => EventPayloads.StoredOncePerEvent(e.Payload));
        await using var cmd = Db.CreateCommand(separate ? (maybeSeen ? MaybeSeenPayloadRowsSql : FirstSeenPayloadRowsSql) : maybeSeen ? MaybeSeenSql : FirstSeenSql);
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.UserId).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.EventType).ToArray() });
        cmd.Parameters.Add(new() { Value = events.Select(e => e.Payload).ToArray() });
        if (maybeSeen)
        {
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now - TimeSpan.FromDays(DedupDays)) });
            // Bounded above too, so the (empty) partitions made ahead for the coming days are not planned.
            cmd.Parameters.Add(new() { Value = DeliveryIds.Floor(now + TimeSpan.FromDays(1)) });
        }
        if (separate) cmd.Parameters.Add(new() { Value = events.Select(e => EventPayloads.StoredOncePerEvent(e.Payload)).ToArray() });
        var work = new List<DeliveryWork>(events.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        return work;
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
