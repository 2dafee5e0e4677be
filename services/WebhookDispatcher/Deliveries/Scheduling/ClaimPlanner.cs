namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Picks what a pass of the <see cref="DeliveryScheduler"/> claims: round robin over the lanes (a
/// different first lane each pass), within the process's budget of attempts, each lane's share of
/// its subscription's concurrency and rate, each destination's room
/// (<see cref="DeliveryOptions.MaxInFlightPerHost"/>, one user's subscriptions to one host) and
/// each user's (<see cref="DeliveryOptions.MaxInFlightPerUser"/>). Pure bookkeeping for the
/// scheduler's loop: no I/O, no locks.
/// </summary>
public sealed class ClaimPlanner
{
    private readonly DestinationLimits _destinations = new();
    private readonly DestinationLimits _users = new();
    private int _roundRobin;

    /// <summary>One delivery taken from its lane to be claimed, and the destination and user it counts against (null while the lane's settings are not known).</summary>
    public readonly record struct Planned(EndpointLane Lane, EndpointLane.Waiting Waiting, string? Destination, string? User);

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
    /// <param name="userCap">Attempts in flight per user in this process.</param>
    /// <param name="replicas">Replicas sharing a lane's rate when its backlog's sharers are not known.</param>
    /// <param name="leftWaiting">Whether anything was left waiting.</param>
    public List<Planned> Plan(IReadOnlyList<EndpointLane> lanes, DateTimeOffset now, int budget, int cap, int destinationCap, int userCap,
        int replicas, out bool leftWaiting)
    {
        var plan = new List<Planned>();
        leftWaiting = budget <= 0;
        if (lanes.Count == 0) return plan;
        var start = _roundRobin++ % lanes.Count;
        for (var i = 0; i < lanes.Count && budget > 0; i++)
        {
            var lane = lanes[(start + i) % lanes.Count];
            var n = Math.Min(lane.Startable(now, cap, lane.RateSharers(replicas)), budget);
            if (n > 0 && lane.Destination is { } destination) n = Math.Min(n, _destinations.Room(destination, destinationCap));
            if (n > 0 && lane.User is { } user) n = Math.Min(n, _users.Room(user, userCap));
            if (n > 0)
            {
                if (lane.Destination is not null) _destinations.Add(lane.Destination, n);
                if (lane.User is not null) _users.Add(lane.User, n);
                foreach (var w in lane.Take(n)) plan.Add(new Planned(lane, w, lane.Destination, lane.User));
                budget -= n;
            }
            leftWaiting |= lane.Queued > 0 || lane.Backlogged || budget <= 0;
        }
        return plan;
    }

    /// <summary>
    /// How many attempts <paramref name="lane"/> could start now under its own room and its
    /// destination's and user's, less <paramref name="destinationUsed"/> and <paramref name="userUsed"/>
    /// already promised elsewhere (0 or more).
    /// </summary>
    public int Room(EndpointLane lane, DateTimeOffset now, int cap, int destinationCap, int userCap, int replicas,
        int destinationUsed = 0, int userUsed = 0)
    {
        var n = lane.Room(now, cap, lane.RateSharers(replicas));
        if (n > 0 && lane.Destination is { } destination) n = Math.Min(n, _destinations.Room(destination, destinationCap) - destinationUsed);
        if (n > 0 && lane.User is { } user) n = Math.Min(n, _users.Room(user, userCap) - userUsed);
        return Math.Max(0, n);
    }

    /// <summary>Counts one attempt of <paramref name="lane"/> claimed elsewhere (at insert) when it fits under every cap; false when it does not (nothing counted).</summary>
    public bool TryAdmit(EndpointLane lane, DateTimeOffset now, int cap, int destinationCap, int userCap, int replicas)
    {
        if (Room(lane, now, cap, destinationCap, userCap, replicas) <= 0) return false;
        if (lane.Destination is not null) _destinations.Add(lane.Destination, 1);
        if (lane.User is not null) _users.Add(lane.User, 1);
        return true;
    }

    /// <summary>The claim failed: every planned delivery goes back to its lane, and nothing counts against its destination or user.</summary>
    public void PutBack(List<Planned> plan)
    {
        foreach (var group in plan.GroupBy(p => p.Lane))
            group.Key.PutBack(group.Select(p => p.Waiting).ToList());
        foreach (var p in plan)
            Release(p.Destination, p.User);
    }

    /// <summary>An attempt counted against <paramref name="destination"/> and <paramref name="user"/> ended, or was never started (not claimed).</summary>
    public void Release(string? destination, string? user)
    {
        if (destination is not null) _destinations.Release(destination);
        if (user is not null) _users.Release(user);
    }
}
