namespace Notely.Events;

/// <summary>
/// What every Notely domain event carries. Publishers fill these three; the webhook dispatcher
/// uses them to find the user's subscriptions and to build the payload's <c>id</c> and
/// <c>created_at</c>.
/// </summary>
public interface INotelyEvent
{
    /// <summary>
    /// Unique identifier of this occurrence. Publishing the same event twice with the same id
    /// yields one webhook delivery per subscription (the id is the idempotency key).
    /// </summary>
    Guid EventId { get; }

    /// <summary>Opaque identifier of the user who owns the event (the JWT subject in the API).</summary>
    string UserId { get; }

    /// <summary>When the event happened, in UTC; sent to subscribers as <c>created_at</c>.</summary>
    DateTimeOffset OccurredAt { get; }
}
