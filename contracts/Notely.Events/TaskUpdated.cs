namespace Notely.Events;

/// <summary>Event type <c>task.updated</c>: A task was changed.</summary>
public sealed record TaskUpdated : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the task.</summary>
    public required string TaskId { get; init; }

    /// <summary>Title after the change.</summary>
    public required string Title { get; init; }

    /// <summary>Description after the change, if any.</summary>
    public string? Description { get; init; }

    /// <summary>Due date after the change (UTC), if any.</summary>
    public DateTimeOffset? DueDate { get; init; }

    /// <summary>Names of the fields that changed (snake_case).</summary>
    public required IReadOnlyList<string> ChangedFields { get; init; }
}
