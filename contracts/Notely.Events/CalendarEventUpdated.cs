namespace Notely.Events;

/// <summary>Event type <c>calendar.event_updated</c>: A calendar event was changed.</summary>
public sealed record CalendarEventUpdated : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the calendar event.</summary>
    public required string CalendarEventId { get; init; }

    /// <summary>Title of the event after the change.</summary>
    public required string Title { get; init; }

    /// <summary>Start after the change (UTC).</summary>
    public required DateTimeOffset StartsAt { get; init; }

    /// <summary>End after the change (UTC).</summary>
    public required DateTimeOffset EndsAt { get; init; }

    /// <summary>Location after the change, if any.</summary>
    public string? Location { get; init; }

    /// <summary>Names of the fields that changed (snake_case).</summary>
    public required IReadOnlyList<string> ChangedFields { get; init; }
}
