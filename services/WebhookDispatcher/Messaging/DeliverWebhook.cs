namespace WebhookDispatcher.Messaging;

/// <summary>
/// Command to attempt one delivery. Carries only the id: the payload, attempt count and target
/// are read from the database, which stays the source of truth across redeliveries.
/// </summary>
/// <param name="DeliveryId">The row of <c>webhook_deliveries</c> to attempt.</param>
public sealed record DeliverWebhook(Guid DeliveryId);
