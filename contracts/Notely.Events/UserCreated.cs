namespace Notely.Events;

/// <summary>Event type <c>user.created</c>: A Notely account was created.</summary>
public sealed record UserCreated : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>The account's email address.</summary>
    public required string Email { get; init; }

    /// <summary>Display name, if given.</summary>
    public string? DisplayName { get; init; }
}
