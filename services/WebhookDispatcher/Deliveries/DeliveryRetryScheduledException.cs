namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Thrown by the delivery consumer after a failed attempt that has attempts left, so that
/// MassTransit's redelivery pipeline sends the message back through the broker's delay queue for
/// <see cref="Delay"/>. The attempt is already recorded when this is thrown.
/// </summary>
/// <param name="deliveryId">The delivery.</param>
/// <param name="failedAttempt">1-based number of the attempt that failed.</param>
/// <param name="delay">How long the broker holds the message before the next attempt.</param>
public sealed class DeliveryRetryScheduledException(Guid deliveryId, int failedAttempt, TimeSpan delay)
    : Exception($"Delivery {deliveryId} attempt {failedAttempt} failed; next attempt in {delay.TotalSeconds:0} s")
{
    /// <summary>The delivery.</summary>
    public Guid DeliveryId { get; } = deliveryId;

    /// <summary>How long the broker holds the message before the next attempt.</summary>
    public TimeSpan Delay { get; } = delay;

    /// <summary>None: this is a scheduled retry, not a fault, and MassTransit logs it on every retry.</summary>
    public override string? StackTrace => null;
}
