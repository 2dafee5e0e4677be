namespace Notely.Events;

/// <summary>Event type <c>user.settings_updated</c>: The user changed account settings.</summary>
public sealed record UserSettingsUpdated : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Names of the settings that changed (snake_case).</summary>
    public required IReadOnlyList<string> ChangedSettings { get; init; }
}
