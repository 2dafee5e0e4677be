namespace Notely.Events;

/// <summary>Event type <c>email.indexed</c>: An email was indexed and is now searchable.</summary>
public sealed record EmailIndexed : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the email in Notely.</summary>
    public required string EmailId { get; init; }

    /// <summary>When indexing finished (UTC).</summary>
    public required DateTimeOffset IndexedAt { get; init; }
}
