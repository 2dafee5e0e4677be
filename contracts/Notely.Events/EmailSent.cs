namespace Notely.Events;

/// <summary>Event type <c>email.sent</c>: The user sent an email through Notely.</summary>
public sealed record EmailSent : INotelyEvent
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

    /// <summary>When the email was handed to the mail server (UTC).</summary>
    public required DateTimeOffset SentAt { get; init; }
}
