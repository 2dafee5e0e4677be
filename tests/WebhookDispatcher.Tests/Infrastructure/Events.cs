using Notely.Events;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>Sample events for tests.</summary>
public static class Events
{
    /// <summary>A fresh user id, so tests sharing the database and broker never see each other's deliveries.</summary>
    public static string NewUser() => "user-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>
    /// Midday UTC of today, as the process clock a fan-out is given: far from midnight, so the store
    /// takes its statement for events seen for the first time whatever the hour the test runs
    /// (<see cref="Deliveries.FanOutStore.NearMidnightUtc"/>); the rows still take the database's now().
    /// </summary>
    public static DateTimeOffset MiddayUtc => new(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero);

    public static EmailReceived EmailReceived(string userId, Guid? eventId = null) => new()
    {
        EventId = eventId ?? Guid.NewGuid(),
        UserId = userId,
        OccurredAt = new DateTimeOffset(2026, 11, 30, 9, 15, 0, TimeSpan.Zero),
        EmailId = "em_" + Guid.NewGuid().ToString("N")[..8],
        Subject = "Quarterly report — draft ✓",
        From = "alice@example.com",
        To = ["bob@example.com"],
        Date = new DateTimeOffset(2026, 11, 30, 9, 14, 0, TimeSpan.Zero),
        BodyPreview = "Hi Bob, attached is the draft…",
    };
}
