namespace WebhookDispatcher.Deliveries;

/// <summary>What an attempt's outcome means for its delivery.</summary>
/// <param name="Status">The delivery's new status: success, failed or retrying.</param>
/// <param name="NextRetryAt">When the next attempt is due (UTC), if <see cref="DeliveryStatus.Retrying"/>.</param>
/// <param name="DisableSubscription">Whether the receiver asked to stop (410 Gone).</param>
public sealed record AttemptDecision(string Status, DateTimeOffset? NextRetryAt, bool DisableSubscription)
{
    /// <summary>Whether the delivery is finished (success or failed).</summary>
    public bool IsFinal => Status is DeliveryStatus.Success or DeliveryStatus.Failed;

    /// <summary>
    /// Only 2xx succeeds. 410 Gone fails the delivery and disables the subscription. Anything else
    /// (other statuses, 3xx, timeouts, network errors) is retried after
    /// <see cref="RetrySchedule.DelayAfter"/> (a Retry-After on 429/503 may lengthen the wait)
    /// while attempts are left, else the delivery fails. The schedule counts attempts from the
    /// start of the round (<paramref name="roundFirstAttempt"/>): a manual retry's round waits 2,
    /// 4, 8 s … like a new delivery's, not where the previous round stopped.
    /// </summary>
    /// <param name="attemptNumber">1-based number of the attempt just made, over all rounds.</param>
    /// <param name="maxAttempts">Attempts the delivery may make in all rounds (1 + retry count per round).</param>
    /// <param name="response">The attempt's outcome.</param>
    /// <param name="now">When the attempt finished; the retry delay counts from here.</param>
    /// <param name="roundFirstAttempt">1-based number of the current round's first attempt: 1, or the
    /// first attempt after a manual retry. Values above <paramref name="attemptNumber"/> count as it.</param>
    public static AttemptDecision Decide(int attemptNumber, int maxAttempts, WebhookResponse response, DateTimeOffset now,
        int roundFirstAttempt = 1)
    {
        if (response.IsSuccess)
            return new(DeliveryStatus.Success, null, false);
        if (response.StatusCode == 410)
            return new(DeliveryStatus.Failed, null, true);
        if (attemptNumber >= maxAttempts)
            return new(DeliveryStatus.Failed, null, false);
        var attemptInRound = Math.Max(1, attemptNumber - Math.Max(1, roundFirstAttempt) + 1);
        return new(DeliveryStatus.Retrying, now + RetrySchedule.DelayAfter(attemptInRound, response.RetryAfter), false);
    }
}
