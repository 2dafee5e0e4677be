namespace WebhookDispatcher.Deliveries;

/// <summary>The scheduler's side of claim at insert (<see cref="InsertClaims"/>, docs/decisions/0011): room published, claimed deliveries started or given back.</summary>
public sealed partial class DeliveryScheduler
{
    /// <summary>
    /// Starts the deliveries the fan-out claimed at insert (<see cref="InsertClaims"/>) that still
    /// fit under their caps; gives back the others, which then wait in their lanes as new ones do
    /// (if that fails, the reconciler gives them back when their lease ends).
    /// </summary>
    private async Task StartClaimedAsync(DateTimeOffset now, CancellationToken stop)
    {
        if (!claims.TryRead(out var delivery)) return;
        var caps = Caps();
        var budget = options.Value.MaxInFlight;
        List<DeliveryWork>? giveBack = null;
        do
        {
            var lane = _lanes.GetOrAdd(delivery.SubscriptionId, out _);
            lane.Learn(delivery.UserId, delivery.Url, delivery.RateLimitPerSecond);
            if (_inFlight < budget && _planner.TryAdmit(lane, now, caps.Subscription, caps.Destination, caps.User, caps.Replicas))
            {
                lane.StartedClaimed(delivery.Id, now, delivery.RateLimitPerSecond);
                Start(lane, delivery, now, lane.Destination, lane.User);
            }
            else (giveBack ??= []).Add(new DeliveryWork(delivery.Id, delivery.SubscriptionId));
        } while (claims.TryRead(out delivery));
        if (giveBack is null) return;
        try
        {
            await store.UnclaimAsync(giveBack.Select(w => w.DeliveryId).ToList(), holdHere: true, stop);
            foreach (var w in giveBack) _incoming.Writer.TryWrite(w);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogUnclaimFailed(logger, ex, giveBack.Count);
        }
    }

    /// <summary>
    /// On a graceful stop: gives back the deliveries claimed at insert that were never started
    /// (after a statement still holding room has returned it, up to 10 s), so a running replica
    /// takes them as new ones and no attempt counts as lost. Left to the reconciler if that fails.
    /// </summary>
    private async Task GiveBackClaimedAsync()
    {
        await claims.WaitReturnedAsync(TimeSpan.FromSeconds(10));
        var ids = new List<Guid>();
        while (claims.TryRead(out var delivery)) ids.Add(delivery.Id);
        if (ids.Count == 0) return;
        try
        {
            await store.UnclaimAsync(ids, holdHere: false, CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogUnclaimFailed(logger, ex, ids.Count);
        }
    }

    /// <summary>Publishes the room the next fan-out statement may claim at insert; none while claims pause or when the setting is off.</summary>
    private void PublishRoom(DateTimeOffset now)
    {
        if (!options.Value.ClaimAtInsert || now < _claimPausedUntil)
        {
            claims.Withdraw();
            return;
        }
        var caps = Caps();
        claims.Publish(_lanes.All, _planner, now, options.Value.MaxInFlight - _inFlight, caps.Subscription, caps.Destination, caps.User, caps.Replicas);
    }

    [LoggerMessage(LogLevel.Warning, "Could not give back {Count} delivery(ies) claimed at insert that no longer fit their lanes; the reconciler will when their lease ends")]
    private static partial void LogUnclaimFailed(ILogger logger, Exception ex, int count);
}
