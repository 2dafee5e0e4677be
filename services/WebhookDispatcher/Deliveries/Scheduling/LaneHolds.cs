using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Keeps the reconcilers of every replica away from what waits in this process's lanes, and
/// bounds the lanes' memory: deliveries that wait longer than half the reconciler's grace are
/// marked held by this dispatcher, once (<c>held_by</c>); deliveries beyond
/// <see cref="DeliveryOptions.MaxQueuedPerSubscription"/> go to their subscription's backlog in the
/// database, held the same way, and come back, oldest first, as the lane drains. One heartbeat
/// row keeps all of them held, so a long wait costs no writes per delivery; when the process
/// dies the heartbeat runs out and any replica's reconciler takes them over. A graceful stop
/// gives everything back at once.
/// </summary>
public sealed partial class LaneHolds(
    LaneStore store, IOptions<DeliveryOptions> options, IOptions<ReconcilerOptions> reconciler, ILogger<LaneHolds> logger)
{
    private const int MaxBacklogTake = 5000;

    /// <summary>Deliveries marked held in one pass of the scheduler at most; more are marked in the passes after it.</summary>
    public const int MaxHoldsPerPass = 500;

    /// <summary>
    /// How long a rate-limited lane's refill from its backlog lasts at most, at its rate share: the
    /// rest stays in the database, where it costs no memory and any replica may take it.
    /// </summary>
    public static readonly TimeSpan RateLimitedRefill = TimeSpan.FromSeconds(60);

    private DateTimeOffset _nextHoldPass;

    /// <summary>Whether the last hold pass left deliveries to mark for the next one (the scheduler then passes again soon).</summary>
    public bool HoldsLeft { get; private set; }
    private DateTimeOffset _nextHeartbeat;

    /// <summary>The reconciler's grace: how long past due a delivery may be before a reconciler takes it.</summary>
    public TimeSpan Grace => TimeSpan.FromSeconds(reconciler.Value.GraceSeconds);

    /// <summary>
    /// Sends deliveries that did not fit in their lane to the subscription's backlog (held by this
    /// process) and marks those lanes backlogged. On failure their rows stay due and unheld: the
    /// reconciler re-publishes them.
    /// </summary>
    public async Task DeferAsync(IReadOnlyList<(EndpointLane Lane, Guid Id)> overflow, CancellationToken stop)
    {
        try
        {
            await store.DeferToBacklogAsync(overflow.Select(o => o.Id).ToList(), stop);
            foreach (var lane in overflow.Select(o => o.Lane).Distinct().Where(l => !l.Backlogged))
            {
                lane.Backlogged = true;
                LogBacklogStarted(logger, lane.SubscriptionId, lane.Queued);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, overflow.Count);
        }
    }

    /// <summary>Lanes with a backlog and room take the oldest of it back, up to half their bound at a time.</summary>
    /// <param name="lanes">The lanes.</param>
    /// <param name="now">The time, for the lanes' bookkeeping.</param>
    /// <param name="replicas">Replicas sharing a lane's rate when its backlog's sharers are not known yet.</param>
    /// <param name="stop">Cancels the statements.</param>
    public async Task RefillAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, int replicas, CancellationToken stop)
    {
        var max = options.Value.MaxQueuedPerSubscription;
        foreach (var lane in lanes)
        {
            if (!lane.Backlogged || lane.Queued > max / 2) continue;
            var limit = Math.Min(MaxBacklogTake, Math.Max(1, max - lane.Queued));
            if (lane.RateLimitPerSecond is { } rate)
            {
                var (permits, window) = EndpointLane.RateWindow(rate, lane.RateSharers(replicas));
                if (lane.Queued >= permits) continue;
                limit = Math.Min(limit, Math.Max(1, (int)(permits * (RateLimitedRefill / window))));
            }
            try
            {
                var ids = await store.TakeBacklogAsync(lane.SubscriptionId, limit, stop);
                foreach (var id in ids) lane.TryEnqueue(id, DateTimeOffset.MaxValue, max, now, fromBacklog: true); // held by this dispatcher already
                if (ids.Count < limit) lane.Backlogged = false;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                store.OnFailure(ex);
                LogHoldFailed(logger, ex, limit);
                return;
            }
        }
    }

    /// <summary>
    /// Every second, marks the deliveries that have waited here for half the grace as held by
    /// this dispatcher (each once; at most <see cref="MaxHoldsPerPass"/> a pass, the rest in the next passes); every third of the grace, renews the heartbeat that keeps all
    /// those holds alive and learns how many dispatchers drain each backlog (<see cref="EndpointLane.Sharers"/>).
    /// </summary>
    public async Task RenewIfDueAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, CancellationToken stop)
    {
        if (now >= _nextHeartbeat)
        {
            _nextHeartbeat = now + Grace / 3;
            var backlogged = lanes.Where(l => l.Backlogged).ToList();
            try
            {
                var sharers = await store.HeartbeatAsync(Grace, backlogged.Select(l => l.SubscriptionId).ToList(), stop);
                foreach (var lane in backlogged) lane.Sharers = sharers.GetValueOrDefault(lane.SubscriptionId, 1);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                _nextHeartbeat = now + TimeSpan.FromSeconds(1);
                store.OnFailure(ex);
                LogHeartbeatFailed(logger, ex);
            }
        }
        if (now >= _nextHoldPass)
        {
            _nextHoldPass = now + TimeSpan.FromSeconds(1);
            await HoldWaitingAsync(lanes, now, stop);
        }
    }

    private async Task HoldWaitingAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, CancellationToken stop)
    {
        HoldsLeft = false;
        var due = lanes.SelectMany(l => l.WaitingDeliveries).Where(w => w.HeldUntil - now < Grace / 2).Take(MaxHoldsPerPass + 1).ToList();
        if (due.Count == 0) return;
        if (due.Count > MaxHoldsPerPass)
        {
            // The rest in the next passes: a burst's thousands of holds in one statement would keep
            // every lane's claims waiting for it (half the grace is left before any of them is due).
            due.RemoveAt(MaxHoldsPerPass);
            _nextHoldPass = now;
            HoldsLeft = true;
        }
        try
        {
            await store.HoldAsync(due.Select(w => w.DeliveryId).ToList(), true, stop);
            // Held by this dispatcher's heartbeat from now on: no renewal per delivery.
            foreach (var w in due) w.HeldUntil = DateTimeOffset.MaxValue;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Tried again in a second, not at once.
            _nextHoldPass = now + TimeSpan.FromSeconds(1);
            HoldsLeft = false;
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, due.Count);
        }
    }

    /// <summary>On a graceful stop, gives the waiting deliveries and backlogs back at once, so other replicas need not wait for the heartbeat to run out.</summary>
    public async Task ReleaseAsync(IReadOnlyList<EndpointLane> lanes)
    {
        try
        {
            await store.ReleaseAllAsync(lanes.Select(l => l.SubscriptionId).ToList(), CancellationToken.None);
        }
        catch (Exception ex)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, lanes.Sum(l => l.Queued));
        }
    }

    [LoggerMessage(LogLevel.Warning, "Could not renew this dispatcher's heartbeat; its held deliveries may be re-published by a reconciler (harmless)")]
    private static partial void LogHeartbeatFailed(ILogger logger, Exception ex);

    [LoggerMessage(LogLevel.Warning, "Could not hold {Count} waiting delivery(ies); the reconciler may re-publish them (harmless)")]
    private static partial void LogHoldFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Information, "Subscription {SubscriptionId}: {Queued} deliveries wait in its lane; more wait in its backlog in the database until there is room")]
    private static partial void LogBacklogStarted(ILogger logger, Guid subscriptionId, int queued);
}
