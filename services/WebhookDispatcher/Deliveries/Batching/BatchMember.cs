namespace WebhookDispatcher.Deliveries;

/// <summary>A subscription's batch limits, as stored (<c>batch_max_events</c>, <c>batch_max_wait_ms</c>, <c>batch_max_bytes</c>).</summary>
/// <param name="MaxEvents">Most events in one batch (1–100).</param>
/// <param name="MaxWaitMs">How long the first event of a forming batch waits for more, in milliseconds (0–10,000).</param>
/// <param name="MaxBytes">Largest batch body in bytes of UTF-8 (1,024 to the event payload cap); one event larger than this goes alone.</param>
public readonly record struct BatchLimits(int MaxEvents, int MaxWaitMs, int MaxBytes)
{
    /// <summary>Most events a batch may carry (the API's limit for <c>batch.max_events</c>).</summary>
    public const int MaxMaxEvents = 100;

    /// <summary>Longest <c>batch.max_wait_ms</c>, in milliseconds.</summary>
    public const int MaxMaxWaitMs = 10_000;

    /// <summary>The default <c>batch.max_wait_ms</c>, in milliseconds.</summary>
    public const int DefaultMaxWaitMs = 1000;

    /// <summary>Smallest <c>batch.max_bytes</c>, in bytes.</summary>
    public const int MinMaxBytes = 1024;

    /// <summary>
    /// Limits that close at once (a member swept after its subscription turned batching off: the
    /// close hands it back as a single delivery).
    /// </summary>
    public static readonly BatchLimits Immediate = new(MaxMaxEvents, 0, int.MaxValue);
}

/// <summary>A delivery of a batched subscription waiting in the <see cref="BatchFormer"/> (status <c>batched</c>, no batch yet).</summary>
/// <param name="DeliveryId">The member delivery.</param>
/// <param name="SubscriptionId">Its subscription.</param>
/// <param name="Bytes">Its payload's size in bytes of UTF-8.</param>
/// <param name="Limits">The subscription's limits as the fan-out (or the sweep) read them.</param>
/// <param name="Ordered">Its subscription is ordered too (it has an ordering key): the fan-out hands it to the
/// former only once it settled (decision 0014), and its batch is formed in order (<see cref="BatchStore.CloseAsync"/>).</param>
public sealed record BatchMember(Guid DeliveryId, Guid SubscriptionId, int Bytes, BatchLimits Limits, bool Ordered = false);
