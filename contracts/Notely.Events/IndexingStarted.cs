namespace Notely.Events;

/// <summary>Event type <c>indexing.started</c>: An indexing job started for one of the user's sources.</summary>
public sealed record IndexingStarted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the indexing job.</summary>
    public required string JobId { get; init; }

    /// <summary>What is being indexed, e.g. "gmail" or "drive".</summary>
    public required string Source { get; init; }
}
