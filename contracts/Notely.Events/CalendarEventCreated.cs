namespace Notely.Events;

/// <summary>Event type <c>calendar.event_created</c>: A calendar event was created.</summary>
public sealed record CalendarEventCreated : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the calendar event.</summary>
    public required string CalendarEventId { get; init; }

    /// <summary>Title of the event.</summary>
    public required string Title { get; init; }

    /// <summary>Start (UTC).</summary>
    public required DateTimeOffset StartsAt { get; init; }

    /// <summary>End (UTC).</summary>
    public required DateTimeOffset EndsAt { get; init; }

    /// <summary>Location, if any.</summary>
    public string? Location { get; init; }

    /// <summary>Attendee addresses.</summary>
    public required IReadOnlyList<string> Attendees { get; init; }
}
