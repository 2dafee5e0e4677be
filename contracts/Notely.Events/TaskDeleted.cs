namespace Notely.Events;

/// <summary>Event type <c>task.deleted</c>: A task was deleted.</summary>
public sealed record TaskDeleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the deleted task.</summary>
    public required string TaskId { get; init; }

    /// <summary>Title the task had.</summary>
    public required string Title { get; init; }
}
