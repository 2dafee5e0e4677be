namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Offers ordered deliveries to the <see cref="DeliveryScheduler"/>'s lanes when they may start
/// (decision 0014): at once, or once they have been stored for the settle time
/// (<see cref="DeliveryOptions.OrderingSettleMilliseconds"/>), by a timer. The gate itself is in
/// the claim (<see cref="OrderingGate"/>): an offer that comes too early is refused there and
/// offered again, and one that is lost (the process stops) is the reconciler's, which
/// re-publishes each key's head when it is overdue.
/// </summary>
/// <remarks>The scheduler is resolved on first use: it depends, through the claim, on this class.</remarks>
public sealed class OrderingHandOff(IServiceProvider services, TimeProvider time)
{
    /// <summary>
    /// Added to every wait: the settle time is measured on the database's clock from the row's
    /// <c>created_at</c> (its transaction's start), so an offer made that long after the
    /// process heard of the row is due there too, and rarely refused for a few milliseconds.
    /// </summary>
    public static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(20);

    private DeliveryScheduler? _scheduler;

    private DeliveryScheduler Scheduler => _scheduler ??= services.GetRequiredService<DeliveryScheduler>();

    /// <summary>Offers each delivery after its wait (zero or less: now).</summary>
    public void Offer(IReadOnlyCollection<(DeliveryWork Work, TimeSpan After)> work)
    {
        if (work.Count == 0) return;
        var now = work.Where(w => w.After <= TimeSpan.Zero).Select(w => w.Work).ToList();
        if (now.Count > 0) Scheduler.Enqueue(now);
        foreach (var group in work.Where(w => w.After > TimeSpan.Zero).GroupBy(w => w.After.Ticks / TimeSpan.TicksPerMillisecond))
            OfferAfter([.. group.Select(w => w.Work)], TimeSpan.FromMilliseconds(group.Key + 1));
    }

    /// <summary>Offers <paramref name="work"/> after <paramref name="after"/> plus <see cref="Margin"/>.</summary>
    public void OfferAfter(IReadOnlyList<DeliveryWork> work, TimeSpan after)
    {
        if (work.Count == 0) return;
        _ = OfferLaterAsync(work, after + Margin);
    }

    private async Task OfferLaterAsync(IReadOnlyList<DeliveryWork> work, TimeSpan after)
    {
        await Task.Delay(after, time);
        Scheduler.Enqueue(work);
    }
}
