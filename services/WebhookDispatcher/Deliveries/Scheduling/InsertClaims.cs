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
}

/// <summary>
/// Claim at insert (docs/decisions/0011): after each pass the <see cref="DeliveryScheduler"/>'s
/// loop publishes which lanes could start an attempt at once (settings known, no rate limit,
/// circuit closed, nothing waiting, room under the subscription's, destination's, user's and
/// process's caps); the next fan-out statement takes that room and claims its new deliveries for
/// those subscriptions as it inserts them, so their attempts start with no claim statement of
/// their own. One grant is out at a time: the loop publishes the next only once the statement
/// has handed back what it claimed, which the loop counts before anything else. The loop checks
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
    private int _out; // 1 from Take until Return

    /// <summary>
    /// Takes the published room for the users of a fan-out statement, or <see cref="ClaimGrant.None"/>
    /// when none is published or another statement holds it. A caller that got room must call
    /// <see cref="Return"/> once its statement ended, whatever the outcome.
    /// </summary>
    public ClaimGrant Take(IEnumerable<string> userIds)
    {
        var byUser = Interlocked.Exchange(ref _byUser, NoRoom);
        if (byUser.Count == 0 || Interlocked.Exchange(ref _out, 1) != 0) return ClaimGrant.None;
        var ids = new List<Guid>();
        var rooms = new List<int>();
        foreach (var user in userIds.Distinct())
            if (byUser.TryGetValue(user, out var lanes))
                foreach (var (subscriptionId, room) in lanes)
                {
                    ids.Add(subscriptionId);
                    rooms.Add(room);
                }
        if (ids.Count > 0) return new ClaimGrant([.. ids], [.. rooms]);
        Volatile.Write(ref _out, 0);
        return ClaimGrant.None;
    }

    /// <summary>Hands back what a statement given room claimed (nothing when it failed); the loop starts them and may publish room again.</summary>
    public void Return(IReadOnlyList<ClaimedDelivery> claimed)
    {
        foreach (var c in claimed) _claimed.Writer.TryWrite(c);
        // Room published while this statement ran did not count what it claimed.
        Volatile.Write(ref _byUser, NoRoom);
        Volatile.Write(ref _out, 0);
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
        Dictionary<string, int>? promised = null; // destination or user -> room promised to earlier lanes
        for (var i = 0; i < lanes.Count && budget > 0; i++)
        {
            var lane = lanes[i];
            if (lane.Queued > 0 || lane.Backlogged || lane.Circuit != CircuitState.Closed || !lane.SettingsKnown
                || lane.RateLimitPerSecond is not null || lane.User is not { } user || lane.Destination is not { } destination) continue;
            promised ??= [];
            var toDestination = promised.GetValueOrDefault(destination);
            var toUser = promised.GetValueOrDefault("\0" + user);
            var room = Math.Min(planner.Room(lane, now, cap, destinationCap, userCap, replicas, toDestination, toUser), budget);
            if (room <= 0) continue;
            promised[destination] = toDestination + room;
            promised["\0" + user] = toUser + room;
            budget -= room;
            if (!byUser.TryGetValue(user, out var list)) byUser[user] = list = [];
            list.Add((lane.SubscriptionId, room));
        }
        Volatile.Write(ref _byUser, byUser.Count == 0 ? NoRoom : byUser);
    }

    /// <summary>Publishes no room (the process stops, or claims pause after a database failure).</summary>
    public void Withdraw() => Volatile.Write(ref _byUser, NoRoom);
}
