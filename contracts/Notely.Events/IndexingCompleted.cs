namespace Notely.Events;

/// <summary>Event type <c>indexing.completed</c>: An indexing job finished successfully.</summary>
public sealed record IndexingCompleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the indexing job.</summary>
    public required string JobId { get; init; }

    /// <summary>What was indexed.</summary>
    public required string Source { get; init; }

    /// <summary>Number of items indexed (0 or more).</summary>
    public required long ItemsIndexed { get; init; }

    /// <summary>Wall-clock duration of the job in seconds.</summary>
    public required double DurationSeconds { get; init; }
}
