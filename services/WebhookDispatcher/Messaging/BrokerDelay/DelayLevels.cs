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

    /// <summary>2, 4, 8 … 2048 seconds, then 3600 seconds: <see cref="Exponential"/> of 1 … 12.</summary>
    public static readonly IReadOnlyList<TimeSpan> All = [.. Enumerable.Range(1, 12).Select(Exponential)];

    /// <summary>
    /// The one home of the 2^n rule: 2^<paramref name="n"/> seconds, capped at <see cref="Max"/>
    /// (n ≥ 12 gives 3600 s). Used for the retry schedule of deliveries (2, 4, 8 … s, the original
    /// Notely spec) and for the transient redeliveries of messages.
    /// </summary>
    /// <param name="n">1 or more.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> is below 1.</exception>
    public static TimeSpan Exponential(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        return n >= 12 ? Max : TimeSpan.FromSeconds(1 << n);
    }

    /// <summary>The smallest level not shorter than <paramref name="delay"/>; <see cref="Max"/> for anything longer.</summary>
    public static TimeSpan RoundUp(TimeSpan delay)
    {
        foreach (var level in All)
            if (level >= delay) return level;
        return Max;
    }
}
