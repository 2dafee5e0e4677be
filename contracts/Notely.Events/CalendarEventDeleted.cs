namespace Notely.Events;

/// <summary>Event type <c>calendar.event_deleted</c>: A calendar event was deleted.</summary>
public sealed record CalendarEventDeleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the deleted calendar event.</summary>
    public required string CalendarEventId { get; init; }

    /// <summary>Title the event had.</summary>
    public required string Title { get; init; }
}
