using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The scheduler's SQL: the claim of the attempts that start, the holds on deliveries waiting in
/// this process's lanes, and the subscriptions' backlogs.
/// </summary>
/// <remarks>
/// <paramref name="ordering"/> re-offers ordered deliveries refused only for their settle time
/// (decision 0014); without it (tests of the store alone) they wait for the reconciler.
/// </remarks>
public sealed partial class LaneStore(NpgsqlDataSource db, DispatcherIdentity dispatcher, OrderingHandOff? ordering = null,
    IOptions<DeliveryOptions>? options = null) : StageStore(db), IDisposable
{
    private readonly double _settleSeconds = (options?.Value.OrderingSettleMilliseconds ?? new DeliveryOptions().OrderingSettleMilliseconds) / 1000.0;

    /// <summary>
    /// Bytes of payloads stored once per event kept in memory between claims (64 MiB), each for
    /// 30 s after its last use: a large event's deliveries claimed over several passes (paced,
    /// or capped per destination) read its payload from the database once, not once per pass.
    /// </summary>
    public const long PayloadCacheBytes = 64 << 20;

    private readonly MemoryCache _payloads = new(new MemoryCacheOptions { SizeLimit = PayloadCacheBytes });

    /// <summary>How long past its timeout an attempt in flight keeps its claim, in seconds.</summary>
    public const int LeaseMarginSeconds = 30;

    /// <summary>How early, in seconds, a redelivered message may arrive and still be attempted (the broker's TTL is not exact).</summary>
    public const double EarlyToleranceSeconds = 1;

    /// <summary>
    /// Payloads in the delivery row up to this many bytes come back with the claim; larger ones,
    /// and those stored once per event (<see cref="EventPayloads"/>), are read once per event of
    /// the claim (a fan-out's deliveries share one copy in memory, not one each). A delivery whose
    /// stored payload is gone (removed by hand) fails with that reason and is not returned.
    /// </summary>
    public const int InlinePayloadBytes = 8192;

    /// <summary>
    /// Gives back deliveries this dispatcher claimed at insert (<see cref="InsertClaims"/>) and
    /// did not start (their lane filled meanwhile, or the process stops): they become as the
    /// fan-out makes them without a claim (no attempt, due now), held by this dispatcher when
    /// <paramref name="holdHere"/> (they wait in its lanes), else by none (a running replica takes them).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed (the reconciler gives them back when their lease ends).</exception>
    public async Task UnclaimAsync(IReadOnlyCollection<Guid> deliveryIds, bool holdHere, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            UPDATE webhook_deliveries
            SET attempt_count = 0, first_attempt_at = NULL, last_attempt_at = NULL, next_retry_at = now(), in_flight = false,
                held_by = CASE WHEN $3 THEN $2 END
            WHERE id = ANY ($1) AND in_flight AND held_by = $2 AND attempt_count = 1 AND status = 'pending'
            """);
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        cmd.Parameters.Add(new() { Value = dispatcher.Id });
        cmd.Parameters.Add(new() { Value = holdHere });
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Marks deliveries waiting in this process's lanes as held by this dispatcher, once: the
    /// reconciler of any replica leaves them alone while this dispatcher's heartbeat lives
    /// (<see cref="HeartbeatAsync"/>), so a long wait costs no further writes; false gives them
    /// back (shutdown). Touches only unfinished deliveries and no indexed column.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task HoldAsync(IReadOnlyCollection<Guid> deliveryIds, bool hold, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand(hold
            ? "UPDATE webhook_deliveries SET held_by = $2 WHERE id = ANY ($1) AND status NOT IN ('success', 'failed', 'cancelled')"
            : "UPDATE webhook_deliveries SET held_by = NULL WHERE id = ANY ($1) AND held_by = $2");
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        cmd.Parameters.Add(new() { Value = dispatcher.Id });
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Moves due deliveries that do not fit in their lane to the subscription's backlog in the
    /// database: due whenever capacity allows (<c>next_retry_at</c> null, which also keeps them
    /// out of the reconciler's due scan), held by this dispatcher. Deliveries not due yet or finished are left alone.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    public async Task DeferToBacklogAsync(IReadOnlyCollection<Guid> deliveryIds, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            UPDATE webhook_deliveries SET next_retry_at = NULL, held_by = $2
            WHERE id = ANY ($1) AND status NOT IN ('success', 'failed', 'cancelled') AND attempt_count < max_attempts
              AND (next_retry_at IS NULL OR next_retry_at <= now() + make_interval(secs => $3))
            """);
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        cmd.Parameters.Add(new() { Value = dispatcher.Id });
        cmd.Parameters.Add(new() { Value = EarlyToleranceSeconds });
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Takes up to <paramref name="limit"/> deliveries from a subscription's backlog, oldest
    /// first, whichever dispatcher deferred them: due now again and held by this dispatcher.
    /// Returns their ids; fewer than asked means the backlog is empty (or another replica took the rest).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; nothing changed.</exception>
    public async Task<IReadOnlyList<Guid>> TakeBacklogAsync(Guid subscriptionId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            UPDATE webhook_deliveries SET next_retry_at = now(), held_by = $3
            WHERE id IN (SELECT id FROM webhook_deliveries
                         WHERE subscription_id = $1 AND status IN ('pending', 'retrying') AND next_retry_at IS NULL
                         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """);
        cmd.Parameters.Add(new() { Value = subscriptionId });
        cmd.Parameters.Add(new() { Value = limit });
        cmd.Parameters.Add(new() { Value = dispatcher.Id });
        var ids = new List<Guid>(limit);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            ids.Add(reader.GetGuid(0));
        ids.Sort(); // time-ordered ids: oldest first
        return ids;
    }

    /// <summary>
    /// This dispatcher's heartbeat: keeps every hold it wrote alive for <paramref name="aliveFor"/>
    /// from the database's now (one row, however many deliveries wait), and says which
    /// subscriptions' backlogs it drains. Returns, for each of those, how many live dispatchers
    /// drain it (this one included), so a rate limit is shared among them only.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyDictionary<Guid, int>> HeartbeatAsync(TimeSpan aliveFor, IReadOnlyCollection<Guid> backlogged,
        CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            WITH me AS (
                INSERT INTO webhook_dispatchers (id, alive_until, backlogged) VALUES ($1, now() + make_interval(secs => $2), $3)
                ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until, backlogged = EXCLUDED.backlogged),
            -- Dispatchers gone for an hour: their holds ran out long ago (a hold naming no row counts as run out).
            gone AS (DELETE FROM webhook_dispatchers WHERE alive_until < now() - interval '1 hour')
            SELECT b.id, 1 + count(o.id)::int
            FROM unnest($3::uuid[]) AS b(id)
            LEFT JOIN webhook_dispatchers o ON o.id <> $1 AND o.alive_until >= now() AND b.id = ANY (o.backlogged)
            GROUP BY b.id
            """);
        cmd.Parameters.Add(new() { Value = dispatcher.Id });
        cmd.Parameters.Add(new() { Value = aliveFor.TotalSeconds });
        cmd.Parameters.Add(new() { Value = backlogged.ToArray() });
        var sharers = new Dictionary<Guid, int>(backlogged.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            sharers[reader.GetGuid(0)] = reader.GetInt32(1);
        return sharers;
    }

    /// <summary>On a graceful stop: gives back every hold of this dispatcher (its waiting deliveries and backlogs) and ends its heartbeat.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task ReleaseAllAsync(IReadOnlyCollection<Guid> subscriptionIds, CancellationToken cancellationToken)
    {
        await using var batch = Db.CreateBatch();
        batch.BatchCommands.Add(Command("""
            UPDATE webhook_deliveries SET held_by = NULL
            WHERE subscription_id = ANY ($1) AND held_by = $2 AND status IN ('pending', 'retrying')
            """, subscriptionIds.ToArray(), dispatcher.Id));
        batch.BatchCommands.Add(Command("DELETE FROM webhook_dispatchers WHERE id = $1", dispatcher.Id));
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>What a new lane needs to know before it starts anything: each active subscription's user, URL and rate limit.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyList<(Guid SubscriptionId, string UserId, string Url, int? RateLimitPerSecond)>> LoadLaneSettingsAsync(
        IReadOnlyCollection<Guid> subscriptionIds, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("""
            SELECT id, user_id, url, rate_limit_per_second FROM webhook_subscriptions
            WHERE id = ANY ($1) AND is_active AND deleted_at IS NULL
            """);
        cmd.Parameters.Add(new() { Value = subscriptionIds.ToArray() });
        var settings = new List<(Guid, string, string, int?)>(subscriptionIds.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            settings.Add((reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetInt32(3)));
        return settings;
    }

    /// <summary>The subscriptions of deliveries (for messages written before <see cref="DeliverWebhook.SubscriptionId"/> existed).</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyList<DeliveryWork>> FindSubscriptionsAsync(IReadOnlyCollection<Guid> deliveryIds, CancellationToken cancellationToken)
    {
        await using var cmd = Db.CreateCommand("SELECT id, subscription_id FROM webhook_deliveries WHERE id = ANY ($1)");
        cmd.Parameters.Add(new() { Value = deliveryIds.ToArray() });
        var work = new List<DeliveryWork>(deliveryIds.Count);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            work.Add(new DeliveryWork(reader.GetGuid(0), reader.GetGuid(1)));
        return work;
    }

    /// <inheritdoc />
    public void Dispose() => _payloads.Dispose();
}
