namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// The delays RabbitMQ can hold a message for: one TTL queue per level (a TTL queue expires
/// messages only at its head, so each queue holds a single TTL). 2^1 … 2^11 seconds, then
/// 3600 seconds. A wanted delay is rounded up to a level, so a message never returns early and
/// at most one level late.
/// </summary>
public static class DelayLevels
{
    /// <summary>The longest delay: 3600 seconds.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromHours(1);

    /// <summary>2, 4, 8 … 2048 seconds, then 3600 seconds.</summary>
    public static readonly IReadOnlyList<TimeSpan> All =
        [.. Enumerable.Range(1, 11).Select(n => TimeSpan.FromSeconds(1 << n)), Max];

    /// <summary>The smallest level not shorter than <paramref name="delay"/>; <see cref="Max"/> for anything longer.</summary>
    public static TimeSpan RoundUp(TimeSpan delay)
    {
        foreach (var level in All)
            if (level >= delay) return level;
        return Max;
    }
}
