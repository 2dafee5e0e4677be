using MassTransit;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Hands a <see cref="DeliverWebhook"/> (a retry back from its delay queue, or a re-publish) to
/// the <see cref="DeliveryScheduler"/>. The delivery's row says whether and when it is due, so the
/// message is acknowledged at once: a slow endpoint never holds messages of the shared queue.
/// </summary>
public sealed class DeliveryConsumer(DeliveryScheduler scheduler) : IConsumer<DeliverWebhook>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<DeliverWebhook> context)
    {
        var message = context.Message;
        if (message.SubscriptionId is { } subscriptionId)
            scheduler.Enqueue([new DeliveryWork(message.DeliveryId, subscriptionId)]);
        else
            scheduler.EnqueueUnresolved(message.DeliveryId);
        return Task.CompletedTask;
    }
}
