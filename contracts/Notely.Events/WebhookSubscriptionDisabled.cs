namespace Notely.Events;

/// <summary>
/// Published by the webhook dispatcher (not sent to subscribers) when it disables a subscription
/// by itself, so Notely can tell its owner: its endpoint answered 410 Gone, or every delivery
/// failed for days. The owner turns it back on with <c>PATCH /api/webhooks/{id}</c>
/// <c>{"is_active": true}</c>. Published at least once: consumers should expect the same
/// <see cref="SubscriptionId"/> and <see cref="DisabledAt"/> twice in rare cases.
/// </summary>
public sealed record WebhookSubscriptionDisabled
{
    /// <summary>The subscription's id, as the management API shows it.</summary>
    public required Guid SubscriptionId { get; init; }

    /// <summary>Its owner: the user id of the events and the JWT subject of the API.</summary>
    public required string UserId { get; init; }

    /// <summary>The endpoint URL it delivered to.</summary>
    public required string Url { get; init; }

    /// <summary>
    /// Why: <c>endpoint_gone</c> (the endpoint answered 410 Gone) or <c>failing</c> (every
    /// delivery failed for the configured number of days, at least the configured number of times).
    /// </summary>
    public required string Reason { get; init; }

    /// <summary>When it was disabled (UTC).</summary>
    public required DateTimeOffset DisabledAt { get; init; }

    /// <summary>When its deliveries started failing without a success since (UTC); null for 410 Gone after successes.</summary>
    public DateTimeOffset? FailingSince { get; init; }

    /// <summary>Deliveries that failed since the last success.</summary>
    public required int FailuresSinceSuccess { get; init; }
}
