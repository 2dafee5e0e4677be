using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Keeps the reconcilers of every replica away from what waits in this process's lanes, and
/// bounds the lanes' memory: deliveries that wait longer than half the reconciler's grace get a
/// hold (<c>held_until</c>); deliveries beyond <see cref="DeliveryOptions.MaxQueuedPerSubscription"/>
/// go to their subscription's backlog in the database and come back, oldest first, as the lane
/// drains; a graceful stop gives everything back at once. Holds are durations from the
/// database's clock, as the reconcilers read them; the times kept here only decide when to renew.
/// </summary>
public sealed partial class LaneHolds(
    LaneStore store, IOptions<DeliveryOptions> options, IOptions<ReconcilerOptions> reconciler, ILogger<LaneHolds> logger)
{
    private const int MaxBacklogTake = 5000;

    /// <summary>How long a backlog is held by this process per renewal.</summary>
    public static readonly TimeSpan BacklogHold = TimeSpan.FromSeconds(60);

    private DateTimeOffset _nextHoldPass;
    private DateTimeOffset _nextBacklogHold;

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
            await store.DeferToBacklogAsync(overflow.Select(o => o.Id).ToList(), BacklogHold, stop);
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
    public async Task RefillAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, CancellationToken stop)
    {
        var max = options.Value.MaxQueuedPerSubscription;
        foreach (var lane in lanes)
        {
            if (!lane.Backlogged || lane.Queued > max / 2) continue;
            var limit = Math.Min(MaxBacklogTake, Math.Max(1, max - lane.Queued));
            try
            {
                var ids = await store.TakeBacklogAsync(lane.SubscriptionId, limit, Grace, stop);
                foreach (var id in ids) lane.TryEnqueue(id, now + Grace, max, now, fromBacklog: true);
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
    /// Renews, when due, the holds of deliveries that have waited here for half the grace (every
    /// second) and of the backlogs (every third of <see cref="BacklogHold"/>).
    /// </summary>
    public async Task RenewIfDueAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, CancellationToken stop)
    {
        if (now >= _nextHoldPass)
        {
            _nextHoldPass = now + TimeSpan.FromSeconds(1);
            await RenewWaitingAsync(lanes, now, stop);
        }
        if (now >= _nextBacklogHold)
        {
            _nextBacklogHold = now + BacklogHold / 3;
            var backlogged = lanes.Where(l => l.Backlogged).Select(l => l.SubscriptionId).ToList();
            if (backlogged.Count > 0)
            {
                try
                {
                    await store.HoldBacklogsAsync(backlogged, BacklogHold, stop);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    store.OnFailure(ex);
                    LogHoldFailed(logger, ex, backlogged.Count);
                }
            }
        }
    }

    private async Task RenewWaitingAsync(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, CancellationToken stop)
    {
        var due = lanes.SelectMany(l => l.WaitingDeliveries).Where(w => w.HeldUntil - now < Grace / 2).ToList();
        if (due.Count == 0) return;
        var until = now + Grace;
        try
        {
            foreach (var chunk in due.Chunk(5000))
                await store.HoldAsync(chunk.Select(w => w.DeliveryId).ToList(), Grace, stop);
            foreach (var w in due) w.HeldUntil = until;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, due.Count);
        }
    }

    /// <summary>On a graceful stop, gives the waiting deliveries and backlogs back at once, so other replicas need not wait for the holds to run out.</summary>
    public async Task ReleaseAsync(IReadOnlyList<EndpointLane> lanes)
    {
        var waiting = lanes.SelectMany(l => l.WaitingDeliveries).Select(w => w.DeliveryId).ToList();
        var backlogged = lanes.Where(l => l.Backlogged).Select(l => l.SubscriptionId).ToList();
        try
        {
            foreach (var chunk in waiting.Chunk(5000))
                await store.HoldAsync(chunk, null, CancellationToken.None);
            if (backlogged.Count > 0)
                await store.HoldBacklogsAsync(backlogged, TimeSpan.Zero, CancellationToken.None);
        }
        catch (Exception ex)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, waiting.Count);
        }
    }

    [LoggerMessage(LogLevel.Warning, "Could not hold {Count} waiting delivery(ies); the reconciler may re-publish them (harmless)")]
    private static partial void LogHoldFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Information, "Subscription {SubscriptionId}: {Queued} deliveries wait in its lane; more wait in its backlog in the database until there is room")]
    private static partial void LogBacklogStarted(ILogger logger, Guid subscriptionId, int queued);
}
