namespace WebhookDispatcher.Deliveries;

/// <summary>A batch to form: members of one subscription, in the order they arrived.</summary>
/// <param name="SubscriptionId">The subscription.</param>
/// <param name="Members">The member delivery ids.</param>
public sealed record ClosedBatch(Guid SubscriptionId, IReadOnlyList<Guid> Members);

/// <summary>
/// The forming batches of one process, one per subscription, in memory (no I/O, one thread: the
/// <see cref="BatchFormer"/>'s loop). A batch closes when it holds <see cref="BatchLimits.MaxEvents"/>
/// members, when the next member would take its body past <see cref="BatchLimits.MaxBytes"/> (a
/// member larger than that alone goes in a batch of its own), or when its first member has waited
/// <see cref="BatchLimits.MaxWaitMs"/>. A batch keeps the limits its first member brought: a member
/// bringing other limits (the subscription's batch settings changed before it was stored) first closes
/// the forming batch as it stands, then starts a new one under its own limits. At most <paramref name="maxMembers"/> members are held in all;
/// past that a member is refused and left to the sweep (it stays in the database, waiting).
/// </summary>
/// <param name="maxMembers">Members held at most, over all subscriptions.</param>
public sealed class BatchBuffers(int maxMembers)
{
    private sealed class Forming(DateTimeOffset firstAt, BatchLimits limits)
    {
        public readonly List<Guid> Members = [];
        public DateTimeOffset FirstAt = firstAt;
        public readonly BatchLimits Limits = limits;
        public long Bytes;
        public DateTimeOffset Due => FirstAt + TimeSpan.FromMilliseconds(Limits.MaxWaitMs);
    }

    private readonly Dictionary<Guid, Forming> _forming = [];
    private readonly HashSet<Guid> _held = [];

    /// <summary>Members held now, over all subscriptions.</summary>
    public int Count => _held.Count;

    /// <summary>
    /// Adds a member that arrived at <paramref name="arrivedAt"/> (a member the sweep found counts
    /// as arrived long ago: its batch is due at once); batches it fills are added to <paramref name="closed"/>.
    /// False when it was not taken: already held, or the buffers are full.
    /// </summary>
    public bool Add(BatchMember member, DateTimeOffset arrivedAt, List<ClosedBatch> closed)
    {
        if (_held.Contains(member.DeliveryId)) return false;
        if (_held.Count >= maxMembers) return false;
        if (!_forming.TryGetValue(member.SubscriptionId, out var forming))
            _forming[member.SubscriptionId] = forming = new Forming(arrivedAt, member.Limits);
        else if (forming.Limits != member.Limits)
        {
            // The subscription's limits changed: the forming batch closes under the limits it was
            // formed with, and this member starts one under its own (decision 0015).
            closed.Add(Close(member.SubscriptionId, forming));
            _forming[member.SubscriptionId] = forming = new Forming(arrivedAt, member.Limits);
        }
        if (arrivedAt < forming.FirstAt) forming.FirstAt = arrivedAt;
        if (forming.Members.Count > 0
            && BatchBody.Size(forming.Bytes + member.Bytes, forming.Members.Count + 1) > forming.Limits.MaxBytes)
        {
            closed.Add(Close(member.SubscriptionId, forming));
            _forming[member.SubscriptionId] = forming = new Forming(arrivedAt, member.Limits);
        }
        forming.Members.Add(member.DeliveryId);
        forming.Bytes += member.Bytes;
        _held.Add(member.DeliveryId);
        if (forming.Members.Count >= forming.Limits.MaxEvents
            || BatchBody.Size(forming.Bytes, forming.Members.Count) >= forming.Limits.MaxBytes)
        {
            closed.Add(Close(member.SubscriptionId, forming));
            _forming.Remove(member.SubscriptionId);
        }
        return true;
    }

    /// <summary>Closes every batch whose first member has waited its subscription's <see cref="BatchLimits.MaxWaitMs"/> by <paramref name="now"/>.</summary>
    public void CloseDue(DateTimeOffset now, List<ClosedBatch> closed)
    {
        List<Guid>? due = null;
        foreach (var (subscriptionId, forming) in _forming)
            if (forming.Due <= now) (due ??= []).Add(subscriptionId);
        if (due is null) return;
        foreach (var subscriptionId in due)
        {
            closed.Add(Close(subscriptionId, _forming[subscriptionId]));
            _forming.Remove(subscriptionId);
        }
    }

    /// <summary>When the next batch is due; null when none is forming.</summary>
    public DateTimeOffset? NextDue()
    {
        DateTimeOffset? next = null;
        foreach (var forming in _forming.Values)
            if (next is null || forming.Due < next) next = forming.Due;
        return next;
    }

    private ClosedBatch Close(Guid subscriptionId, Forming forming)
    {
        foreach (var id in forming.Members) _held.Remove(id);
        return new ClosedBatch(subscriptionId, forming.Members);
    }
}
