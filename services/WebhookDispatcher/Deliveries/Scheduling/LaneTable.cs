namespace WebhookDispatcher.Deliveries;

/// <summary>
/// This process's <see cref="EndpointLane"/>s: found by subscription, served round robin, added
/// and removed in constant time (removal swaps the last lane into the gap). Used by the
/// <see cref="DeliveryScheduler"/>'s loop only, so it needs no locks.
/// </summary>
public sealed class LaneTable
{
    private readonly Dictionary<Guid, int> _index = [];
    private readonly List<EndpointLane> _lanes = [];

    /// <summary>The lanes, in serving order.</summary>
    public IReadOnlyList<EndpointLane> All => _lanes;

    /// <summary>How many lanes there are.</summary>
    public int Count => _lanes.Count;

    /// <summary>The lane of <paramref name="subscriptionId"/>, made if there is none (<paramref name="added"/>).</summary>
    public EndpointLane GetOrAdd(Guid subscriptionId, out bool added)
    {
        added = !_index.TryGetValue(subscriptionId, out var i);
        if (!added) return _lanes[i];
        var lane = new EndpointLane(subscriptionId);
        _index.Add(subscriptionId, _lanes.Count);
        _lanes.Add(lane);
        return lane;
    }

    /// <summary>Removes the lanes that have been idle since before <paramref name="idleSince"/>; one pass over the lanes.</summary>
    public void RemoveIdle(DateTimeOffset idleSince)
    {
        for (var i = _lanes.Count - 1; i >= 0; i--)
        {
            var lane = _lanes[i];
            if (!lane.IsIdle || lane.LastActivity >= idleSince) continue;
            var last = _lanes[^1];
            _lanes[i] = last;
            _index[last.SubscriptionId] = i;
            _lanes.RemoveAt(_lanes.Count - 1);
            _index.Remove(lane.SubscriptionId);
        }
    }
}
