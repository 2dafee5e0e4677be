namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Picks what a pass of the <see cref="DeliveryScheduler"/> claims: round robin over the lanes (a
/// different first lane each pass), within the process's budget of attempts, each lane's share of
/// its subscription's concurrency and rate, and each destination's room
/// (<see cref="DeliveryOptions.MaxInFlightPerHost"/>, one user's subscriptions to one host). Pure
/// bookkeeping for the scheduler's loop: no I/O, no locks.
/// </summary>
public sealed class ClaimPlanner
{
    private readonly DestinationLimits _destinations = new();
    private int _roundRobin;

    /// <summary>One delivery taken from its lane to be claimed, and the destination it counts against (null when the lane's is not known yet).</summary>
    public readonly record struct Planned(EndpointLane Lane, EndpointLane.Waiting Waiting, string? Destination);

    /// <summary>Destinations with attempts in flight.</summary>
    public int Destinations => _destinations.Count;

    /// <summary>
    /// Takes from the lanes what may start now, at most <paramref name="budget"/> deliveries;
    /// <paramref name="leftWaiting"/> says whether something could not start (a lane has more
    /// queued or backlogged, or the budget ran out).
    /// </summary>
    /// <param name="lanes">The process's lanes.</param>
    /// <param name="now">The time, for the lanes' rate windows.</param>
    /// <param name="budget">Attempts that may start in this pass (0 or more).</param>
    /// <param name="cap">Attempts in flight per subscription in this process.</param>
    /// <param name="destinationCap">Attempts in flight per destination in this process.</param>
    /// <param name="replicas">Replicas sharing a lane's rate when its backlog's sharers are not known.</param>
    /// <param name="leftWaiting">Whether anything was left waiting.</param>
    public List<Planned> Plan(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, int budget, int cap, int destinationCap, int replicas,
        out bool leftWaiting)
    {
        var plan = new List<Planned>();
        leftWaiting = budget <= 0;
        if (lanes.Count == 0) return plan;
        var start = _roundRobin++ % lanes.Count;
        for (var i = 0; i < lanes.Count && budget > 0; i++)
        {
            var lane = lanes[(start + i) % lanes.Count];
            var n = Math.Min(lane.Startable(now, cap, lane.RateSharers(replicas)), budget);
            if (n > 0 && lane.Destination is { } destination)
            {
                n = Math.Min(n, _destinations.Room(destination, destinationCap));
                _destinations.Add(destination, n);
            }
            if (n > 0)
            {
                foreach (var w in lane.Take(n)) plan.Add(new Planned(lane, w, lane.Destination));
                budget -= n;
            }
            leftWaiting |= lane.Queued > 0 || lane.Backlogged || budget <= 0;
        }
        return plan;
    }

    /// <summary>The claim failed: every planned delivery goes back to its lane, and nothing counts against its destination.</summary>
    public void PutBack(List<Planned> plan)
    {
        foreach (var group in plan.GroupBy(p => p.Lane))
            group.Key.PutBack(group.Select(p => p.Waiting).ToList());
        foreach (var p in plan)
            Release(p.Destination);
    }

    /// <summary>An attempt counted against <paramref name="destination"/> ended, or was never started (not claimed).</summary>
    public void Release(string? destination)
    {
        if (destination is not null) _destinations.Release(destination);
    }
}
