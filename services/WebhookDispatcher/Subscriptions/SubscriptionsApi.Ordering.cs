using MassTransit;
using Microsoft.Extensions.Options;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// After a subscription's <c>ordering</c> was set to <c>none</c> (decision 0014): publishes its
/// deliveries that waited for their key's turn (at most <see cref="OrderingStore.MaxReleased"/>),
/// so they start at once instead of after the reconciler's grace. The claim no longer gates them
/// (it gates only while the subscription is ordered); a publish that fails or takes longer than
/// <see cref="SubscriptionOptions.RetryPublishTimeoutSeconds"/> is logged and left to the
/// reconciler, which re-publishes any overdue delivery that no replica holds.
/// </summary>
public sealed partial class OrderingRelease(OrderingStore store, NpgsqlDataSource database, IPublishEndpoint publish,
    IOptions<SubscriptionOptions> options, ILogger<OrderingRelease> logger)
{
    /// <summary>Publishes the waiting ordered deliveries of <paramref name="subscriptionId"/>.</summary>
    /// <exception cref="NpgsqlException">The database failed twice.</exception>
    public async Task ReleaseAsync(Guid subscriptionId, CancellationToken cancellationToken)
    {
        var waiting = await DatabaseAvailability.RetryOnceAsync(database, ct => store.WaitingAsync(subscriptionId, ct), cancellationToken);
        await PublishAsync(subscriptionId, waiting, "Ordering", cancellationToken);
    }

    /// <summary>
    /// Publishes deliveries of <paramref name="subscriptionId"/> that a change of its
    /// <paramref name="setting"/> made due now (ordering turned off, batching turned off), within
    /// <see cref="SubscriptionOptions.RetryPublishTimeoutSeconds"/>; otherwise logs it and leaves them to the reconciler.
    /// </summary>
    public async Task PublishAsync(Guid subscriptionId, IReadOnlyList<Guid> deliveryIds, string setting, CancellationToken cancellationToken)
    {
        if (deliveryIds.Count == 0) return;
        using var publishing = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        publishing.CancelAfter(TimeSpan.FromSeconds(options.Value.RetryPublishTimeoutSeconds));
        try
        {
            await publish.PublishBatch(deliveryIds.Select(id => new DeliverWebhook(id, subscriptionId)), publishing.Token);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            LogReleaseNotPublished(logger, setting, subscriptionId, deliveryIds.Count, ex.Message);
        }
    }

    [LoggerMessage(LogLevel.Warning, "{Setting} of webhook {SubscriptionId} turned off: {Count} waiting delivery(ies) not published ({Error}); the reconciler will")]
    private static partial void LogReleaseNotPublished(ILogger logger, string setting, Guid subscriptionId, int count, string error);
}
