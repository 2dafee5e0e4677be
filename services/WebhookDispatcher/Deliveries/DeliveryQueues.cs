namespace WebhookDispatcher.Deliveries;

/// <summary>The names of the delivery wing's queues, as the RabbitMQ management console shows them (docs/operations.md).</summary>
public static class DeliveryQueues
{
    /// <summary>The queue every Notely event type is bound to: the fan-out's input.</summary>
    public const string FanOut = "webhook-fan-out";

    /// <summary>
    /// The queue of <see cref="DeliverWebhook"/> messages (retries back from their delay queues,
    /// re-publishes); its consumers are the replicas that share each subscription's limits.
    /// </summary>
    public const string Delivery = "webhook-delivery";
}
