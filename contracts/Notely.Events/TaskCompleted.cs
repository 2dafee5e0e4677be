namespace Notely.Events;

/// <summary>Event type <c>task.completed</c>: A task was marked as completed.</summary>
public sealed record TaskCompleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the task.</summary>
    public required string TaskId { get; init; }

    /// <summary>Title.</summary>
    public required string Title { get; init; }

    /// <summary>Description, if any.</summary>
    public string? Description { get; init; }

    /// <summary>When the task was completed (UTC).</summary>
    public required DateTimeOffset CompletedAt { get; init; }

    /// <summary>Due date (UTC), if any.</summary>
    public DateTimeOffset? DueDate { get; init; }
}
