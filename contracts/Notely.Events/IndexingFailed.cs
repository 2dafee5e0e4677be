namespace Notely.Events;

/// <summary>Event type <c>indexing.failed</c>: An indexing job failed.</summary>
public sealed record IndexingFailed : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the indexing job.</summary>
    public required string JobId { get; init; }

    /// <summary>What was being indexed.</summary>
    public required string Source { get; init; }

    /// <summary>Human-readable reason of the failure.</summary>
    public required string Error { get; init; }
}
