namespace Notely.Events;

/// <summary>Event type <c>email.received</c>: An email arrived in one of the user's connected mailboxes.</summary>
public sealed record EmailReceived : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the email in Notely.</summary>
    public required string EmailId { get; init; }

    /// <summary>Subject line.</summary>
    public required string Subject { get; init; }

    /// <summary>Sender address.</summary>
    public required string From { get; init; }

    /// <summary>Recipient addresses.</summary>
    public required IReadOnlyList<string> To { get; init; }

    /// <summary>Date the email was sent, from its Date header (UTC).</summary>
    public required DateTimeOffset Date { get; init; }

    /// <summary>First characters of the plain-text body (at most 200 characters).</summary>
    public required string BodyPreview { get; init; }
}
