namespace Notely.Events;

/// <summary>Event type <c>sync.completed</c>: A synchronisation with an external provider finished.</summary>
public sealed record SyncCompleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the sync run.</summary>
    public required string SyncId { get; init; }

    /// <summary>The provider, e.g. "google" or "microsoft".</summary>
    public required string Provider { get; init; }

    /// <summary>Number of items created, updated or deleted by the run (0 or more).</summary>
    public required long ItemsSynced { get; init; }
}
