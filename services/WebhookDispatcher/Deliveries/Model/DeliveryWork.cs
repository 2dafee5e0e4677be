namespace WebhookDispatcher.Deliveries;

/// <summary>One event to fan out: its id, owner, type and the payload built once for every subscription.</summary>
/// <param name="EventId">The event's id: with the subscription, the delivery's idempotency key.</param>
/// <param name="UserId">Its owner.</param>
/// <param name="EventType">Its type name.</param>
/// <param name="Payload">The body every delivery of it sends.</param>
/// <param name="MaybeSeen">Whether it may have been fanned out before (the broker redelivered it,
/// or it was redelivered after a fault): then existing deliveries are looked for across days.</param>
/// <param name="OccurredAt">The event's <c>OccurredAt</c>, stored on its deliveries to order those of one key (decision 0014); null: unknown (sorted last).</param>
/// <param name="OrderingKey">The event's ordering key (<see cref="OrderingKeys"/>); stored for subscriptions ordered <c>per_key</c>. Null: the user's key.</param>
public sealed record FanOutEvent(Guid EventId, string UserId, string EventType, string Payload, bool MaybeSeen = false,
    DateTimeOffset? OccurredAt = null, string? OrderingKey = null);

/// <summary>A delivery to attempt when its endpoint lane allows, with the subscription that picks the lane.</summary>
/// <param name="DeliveryId">The delivery.</param>
/// <param name="SubscriptionId">Its subscription.</param>
public readonly record struct DeliveryWork(Guid DeliveryId, Guid SubscriptionId);

/// <summary>A delivery claimed for one attempt, with what the attempt needs from its subscription.</summary>
/// <remarks><see cref="ClaimedAt"/> is the claim's token: the delivery's <c>last_attempt_at</c> while the claim stands.
/// <see cref="Body"/> is the payload's UTF-8 bytes, one array shared by the deliveries of one event claimed together: never modified.
/// <see cref="RoundFirstAttempt"/> is the number of the current round's first attempt (1, or where a manual retry restarted).
/// <see cref="Template"/> is the subscription's template (Shaping/WebhookTemplate.cs), null to send <see cref="Body"/> as it is.
/// <see cref="Secret"/>, <see cref="PreviousSecret"/>, <see cref="SigningKey"/>, <see cref="PreviousSigningKey"/> and the credential values
/// of <see cref="Headers"/> are as stored (sealed): <see cref="SubscriptionSigner"/> opens them.</remarks>
public sealed record ClaimedDelivery(
    Guid Id,
    DateTimeOffset ClaimedAt,
    Guid SubscriptionId,
    Guid EventId,
    string EventType,
    byte[] Body,
    int AttemptNumber,
    int MaxAttempts,
    string Url,
    string Secret,
    string? PreviousSecret,
    DateTimeOffset? PreviousSecretExpiresAt,
    int TimeoutSeconds,
    int? RateLimitPerSecond,
    string UserId,
    string? Headers,
    string SignatureScheme,
    string? SigningKey,
    string? PreviousSigningKey,
    int RoundFirstAttempt = 1,
    string? Template = null)
{
    /// <summary>Whether the delivery has an ordering key (decision 0014): once it is final, the next of its key is handed on (<see cref="OrderingSuccessors"/>).</summary>
    public bool Ordered { get; init; }
}

/// <summary>One finished attempt, ready to be stored.</summary>
/// <param name="Delivery">The claim the attempt was made under.</param>
/// <param name="StartedAt">When the request started (UTC).</param>
/// <param name="Response">What the receiver answered, or how the request failed.</param>
/// <param name="Decision">The delivery's next state.</param>
/// <param name="FinishedAt">When the answer was complete or the request failed (UTC).</param>
public sealed record FinishedAttempt(ClaimedDelivery Delivery, DateTimeOffset StartedAt, WebhookResponse Response, AttemptDecision Decision,
    DateTimeOffset FinishedAt);

/// <summary>What a fan-out statement stored: deliveries to queue in their lanes, and those claimed at insert, to start now.</summary>
/// <param name="Work">Deliveries that wait in their subscription's lane for a claim.</param>
/// <param name="Claimed">Deliveries claimed at insert for this dispatcher (<see cref="ClaimGrant"/>), each with its body.</param>
public sealed record FanOutResult(IReadOnlyList<DeliveryWork> Work, IReadOnlyList<ClaimedDelivery> Claimed)
{
    /// <summary>New deliveries of ordered subscriptions: offered to their lanes once they settled (<see cref="OrderingHandOff"/>).</summary>
    public IReadOnlyList<DeliveryWork> Settling { get; init; } = [];

    /// <summary>New deliveries of batched subscriptions (status <c>batched</c>), for the <see cref="BatchFormer"/>; never claimed at insert.</summary>
    public IReadOnlyList<BatchMember> Batched { get; init; } = [];
}
