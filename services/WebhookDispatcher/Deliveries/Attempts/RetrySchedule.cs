using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The retry schedule: retry n (n ≥ 1) waits 2^n seconds (2, 4, 8 …) after attempt n failed,
/// capped at <see cref="MaxDelay"/>; a longer Retry-After (RFC 9110 §10.2.3) on 429 or 503 wins,
/// also capped. Delays are rounded up to one of <see cref="DelayLevels.All"/>, the TTLs of the
/// broker's delay queues, so a retry is never earlier than scheduled and at most one level later.
/// </summary>
public static class RetrySchedule
{
    /// <summary>Longest wait between two attempts: 3600 seconds.</summary>
    public static readonly TimeSpan MaxDelay = DelayLevels.Max;

    /// <summary>The wait after failed attempt <paramref name="failedAttempt"/> before the next one.</summary>
    /// <param name="failedAttempt">1-based number of the attempt that failed.</param>
    /// <param name="retryAfter">The receiver's Retry-After, if it sent one.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="failedAttempt"/> is below 1.</exception>
    public static TimeSpan DelayAfter(int failedAttempt, TimeSpan? retryAfter = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(failedAttempt, 1);
        var scheduled = DelayLevels.Exponential(failedAttempt);
        if (retryAfter > scheduled) scheduled = retryAfter.Value < MaxDelay ? retryAfter.Value : MaxDelay;
        return DelayLevels.RoundUp(scheduled);
    }
}
