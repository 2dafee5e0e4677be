using System.Threading.Channels;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Room to claim at insert: for each subscription, how many of its new deliveries one fan-out
/// statement may claim for this dispatcher (<see cref="FanOutStore.FanOutAndClaimAsync"/>).
/// </summary>
/// <param name="SubscriptionIds">The subscriptions.</param>
/// <param name="Rooms">Deliveries each may have claimed (1 or more), in the same order.</param>
public sealed record ClaimGrant(Guid[] SubscriptionIds, int[] Rooms)
{
    /// <summary>No room: the statement claims nothing.</summary>
    public static ClaimGrant None { get; } = new([], []);

    /// <summary>Whether the grant holds no room (<see cref="InsertClaims.Take"/> never hands out an empty grant but <see cref="None"/>).</summary>
    public bool IsNone => SubscriptionIds.Length == 0;
}

/// <summary>
/// Claim at insert (docs/decisions/0011): after each pass the <see cref="DeliveryScheduler"/>'s
/// loop publishes which lanes could start an attempt at once (settings known, no rate limit,
/// circuit closed, nothing waiting, room under the subscription's, destination's, user's and
/// process's caps); the next fan-out statement takes that room and claims its new deliveries for
/// those subscriptions as it inserts them, so their attempts start with no claim statement of
/// their own. One grant is out at a time: the loop publishes the next only once the statement
/// has handed back what it claimed, which the loop counts before anything else; meanwhile what is
/// left of the room (less what was claimed) serves the next statement. The loop checks
/// each claimed delivery against its lane again when it starts it, and gives back what no longer
/// fits (<see cref="LaneStore.UnclaimAsync"/>).
/// </summary>
/// <remarks>
/// <see cref="Take"/> and <see cref="Return"/> are called by the fan-out (any thread);
/// <see cref="Publish"/>, <see cref="Withdraw"/> and <see cref="TryRead"/> by the loop only.
/// </remarks>
public sealed class InsertClaims
{
    private static readonly Dictionary<string, List<(Guid SubscriptionId, int Room)>> NoRoom = [];

    private readonly Channel<ClaimedDelivery> _claimed = Channel.CreateUnbounded<ClaimedDelivery>(new() { SingleReader = true });
    private Dictionary<string, List<(Guid SubscriptionId, int Room)>> _byUser = NoRoom;
    private Dictionary<string, List<(Guid SubscriptionId, int Room)>>? _taken; // the room a statement holds
    private int _out; // 1 from Take until Return
    private int _withdrawals;
    private volatile bool _closed;
    private int _takenAt; // _withdrawals when the room was taken

    /// <summary>
    /// Takes the published room for the users of a fan-out statement, or <see cref="ClaimGrant.None"/>
    /// when none is published or another statement holds it. A caller that got room must call
    /// <see cref="Return"/> once its statement ended, whatever the outcome.
    /// </summary>
    public ClaimGrant Take(IEnumerable<string> userIds)
    {
        if (_closed || Interlocked.CompareExchange(ref _out, 1, 0) != 0) return ClaimGrant.None;
        var takenAt = Volatile.Read(ref _withdrawals);
        var byUser = Interlocked.Exchange(ref _byUser, NoRoom);
        var ids = new List<Guid>();
        var rooms = new List<int>();
        foreach (var user in userIds.Distinct())
            if (byUser.TryGetValue(user, out var lanes))
                foreach (var (subscriptionId, room) in lanes)
                {
                    ids.Add(subscriptionId);
                    rooms.Add(room);
                }
        if (ids.Count == 0)
        {
            // Nothing for these users: the room stays published for the next statement.
            Interlocked.CompareExchange(ref _byUser, byUser, NoRoom);
            Volatile.Write(ref _out, 0);
            return ClaimGrant.None;
        }
        _taken = byUser;
        _takenAt = takenAt;
        return new ClaimGrant([.. ids], [.. rooms]);
    }

    /// <summary>
    /// Hands back what a statement given room claimed (nothing when it failed), for the loop to
    /// start; what is left of the room stays published for the next statement until the loop,
    /// having counted these, publishes afresh.
    /// </summary>
    public void Return(IReadOnlyList<ClaimedDelivery> claimed)
    {
        foreach (var c in claimed) _claimed.Writer.TryWrite(c);
        var taken = _taken;
        _taken = null;
        if (taken is not null && Volatile.Read(ref _withdrawals) == _takenAt)
            Interlocked.CompareExchange(ref _byUser, Less(taken, claimed), NoRoom);
        Volatile.Write(ref _out, 0);
    }

    /// <summary>The room of <paramref name="taken"/> less one for each delivery claimed: its entries for other users stay as they are.</summary>
    private static Dictionary<string, List<(Guid SubscriptionId, int Room)>> Less(
        Dictionary<string, List<(Guid SubscriptionId, int Room)>> taken, IReadOnlyList<ClaimedDelivery> claimed)
    {
        if (claimed.Count == 0) return taken;
        var used = claimed.CountBy(c => c.SubscriptionId).ToDictionary();
        var left = new Dictionary<string, List<(Guid SubscriptionId, int Room)>>(taken);
        foreach (var user in claimed.Select(c => c.UserId).Distinct())
        {
            if (!taken.TryGetValue(user, out var lanes)) continue;
            var rest = lanes.Select(l => (l.SubscriptionId, Room: l.Room - used.GetValueOrDefault(l.SubscriptionId))).Where(l => l.Room > 0).ToList();
            if (rest.Count > 0) left[user] = rest;
            else left.Remove(user);
        }
        return left.Count == 0 ? NoRoom : left;
    }

    /// <summary>A delivery claimed at insert, to start or give back.</summary>
    public bool TryRead(out ClaimedDelivery claimed) => _claimed.Reader.TryRead(out claimed!);

    /// <summary>Whether a statement holds room now (the loop publishes none meanwhile).</summary>
    public bool Out => Volatile.Read(ref _out) != 0;

    /// <summary>
    /// Publishes the room of the lanes that could start an attempt at once, within the caps
    /// (each destination's, user's and the process's room shared out among its lanes, so the
    /// grant itself never exceeds them). Does nothing while a statement holds room.
    /// </summary>
    public void Publish(IReadOnlyList<EndpointLane> lanes, ClaimPlanner planner, DateTimeOffset now, int budget, int cap, int destinationCap,
        int userCap, int replicas)
    {
        // Not while a statement holds room, nor before what one claimed is counted.
        if (Out || _claimed.Reader.TryPeek(out _)) return;
        var byUser = new Dictionary<string, List<(Guid, int)>>();
        // Room already promised to earlier lanes of the same destination, and of the same user.
        var toDestinations = new Dictionary<string, int>();
        var toUsers = new Dictionary<string, int>();
        for (var i = 0; i < lanes.Count && budget > 0; i++)
        {
            var lane = lanes[i];
            if (lane.Queued > 0 || lane.Backlogged || lane.Circuit != CircuitState.Closed || !lane.SettingsKnown
                || lane.RateLimitPerSecond is not null || lane.User is not { } user || lane.Destination is not { } destination) continue;
            var toDestination = toDestinations.GetValueOrDefault(destination);
            var toUser = toUsers.GetValueOrDefault(user);
            var room = Math.Min(planner.Room(lane, now, cap, destinationCap, userCap, replicas, toDestination, toUser), budget);
            if (room <= 0) continue;
            toDestinations[destination] = toDestination + room;
            toUsers[user] = toUser + room;
            budget -= room;
            if (!byUser.TryGetValue(user, out var list)) byUser[user] = list = [];
            list.Add((lane.SubscriptionId, room));
        }
        Volatile.Write(ref _byUser, byUser.Count == 0 ? NoRoom : byUser);
    }

    /// <summary>The process stops: no room is taken from now on (the loop gives back what was claimed before, <see cref="WaitReturnedAsync"/>).</summary>
    public void Close()
    {
        _closed = true;
        Withdraw();
    }

    /// <summary>Waits until no statement holds room, at most <paramref name="timeout"/>; false if one still does.</summary>
    public async Task<bool> WaitReturnedAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Out)
        {
            if (DateTime.UtcNow >= deadline) return false;
            await Task.Delay(20);
        }
        return true;
    }

    /// <summary>Publishes no room (the process stops, or claims pause after a database failure); what a statement holds now is not published again.</summary>
    public void Withdraw()
    {
        Interlocked.Increment(ref _withdrawals);
        Volatile.Write(ref _byUser, NoRoom);
    }
}
