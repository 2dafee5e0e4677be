namespace WebhookDispatcher.Deliveries;

/// <summary>
/// New lanes learn their subscription's destination and rate limit before they start anything
/// (one statement for all the lanes a scheduler pass made), so the per-destination limit holds
/// from a new subscription's first delivery and its lane need not wait for a first claim to learn
/// them. On failure they learn at their first claim, one attempt at a time meanwhile.
/// </summary>
public sealed partial class LaneSettings(LaneStore store, ILogger<LaneSettings> logger)
{
    /// <summary>Loads the settings of <paramref name="lanes"/> (their subscriptions, 1,000 per statement).</summary>
    public async Task LoadAsync(IReadOnlyCollection<EndpointLane> lanes, CancellationToken stop)
    {
        var bySubscription = lanes.ToDictionary(l => l.SubscriptionId);
        try
        {
            foreach (var chunk in bySubscription.Keys.Chunk(1000))
                foreach (var (id, userId, url, rate) in await store.LoadLaneSettingsAsync(chunk, stop))
                    bySubscription[id].Learn(userId, url, rate);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogSettingsFailed(logger, ex, bySubscription.Count);
        }
    }

    [LoggerMessage(LogLevel.Warning, "Could not load the settings of {Count} new lane(s); each starts one attempt at a time until its first claim")]
    private static partial void LogSettingsFailed(ILogger logger, Exception ex, int count);
}
