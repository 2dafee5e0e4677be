using MassTransit;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Command to attempt one delivery when it is due. Carries only ids: the payload, attempt count
/// and target are read from the database, which stays the source of truth across redeliveries.
/// </summary>
/// <remarks>
/// Its message URN and exchange name are pinned to the names it had when it lived in the
/// <c>WebhookDispatcher.Messaging</c> namespace: messages already waiting in the broker's delay
/// queues carry that URN. Never change them; add optional fields instead.
/// </remarks>
/// <param name="DeliveryId">The row of <c>webhook_deliveries</c> to attempt.</param>
/// <param name="SubscriptionId">Its subscription, which picks the endpoint lane; null in messages
/// written before the field existed (the dispatcher then looks it up).</param>
[MessageUrn("WebhookDispatcher.Messaging:DeliverWebhook")]
[EntityName("WebhookDispatcher.Messaging:DeliverWebhook")]
public sealed record DeliverWebhook(Guid DeliveryId, Guid? SubscriptionId = null);
