using MassTransit;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// Makes one attempt of a delivery: claims it, POSTs the stored payload with both signatures,
/// records the attempt, and either finishes the delivery or throws
/// <see cref="DeliveryRetryScheduledException"/> so the broker holds the message until the next
/// attempt is due. Messages for deliveries that are final, not due or in flight elsewhere are
/// acknowledged without an attempt.
/// </summary>
public sealed class DeliveryConsumer(DeliveryStore store, WebhookSender sender, TimeProvider time, ILogger<DeliveryConsumer> logger)
    : IConsumer<DeliverWebhook>
{
    /// <inheritdoc />
    public async Task Consume(ConsumeContext<DeliverWebhook> context)
    {
        var startedAt = time.GetUtcNow();
        var delivery = await store.TryClaimAsync(context.Message.DeliveryId, startedAt, context.CancellationToken);
        if (delivery is null)
        {
            logger.LogDebug("Delivery {DeliveryId}: nothing to attempt now", context.Message.DeliveryId);
            return;
        }

        using var activity = WebhookTelemetry.Source.StartActivity("webhook attempt");
        activity?.SetTag("webhook.delivery_id", delivery.Id);
        activity?.SetTag("webhook.attempt", delivery.AttemptNumber);

        // Once claimed, the attempt runs to its own deadline (at most 60 s) and is recorded even if
        // the broker connection drops or the host is stopping: cancelling it halfway would leave a
        // POST the receiver may have handled with no record. Shutdown waits for it (see AddMessaging).
        var request = BuildRequest(delivery, startedAt);
        var response = await sender.SendAsync(request, CancellationToken.None);
        var finishedAt = time.GetUtcNow();
        var decision = Decide(delivery, response, finishedAt);
        var stillOpen = await store.RecordAttemptAsync(delivery, startedAt, response, decision, finishedAt, CancellationToken.None);

        WebhookTelemetry.RecordAttempt(response);
        activity?.SetTag("http.response.status_code", response.StatusCode);
        activity?.SetTag("webhook.outcome", response.Outcome);
        logger.LogInformation("Delivery {DeliveryId} attempt {Attempt}/{MaxAttempts}: {Outcome} {StatusCode} in {DurationMs} ms -> {Status}",
            delivery.Id, delivery.AttemptNumber, delivery.MaxAttempts, response.Outcome, response.StatusCode,
            (int)response.Duration.TotalMilliseconds, stillOpen ? decision.Status : DeliveryStatus.Cancelled);

        if (stillOpen && decision.Status == DeliveryStatus.Retrying)
            throw new DeliveryRetryScheduledException(delivery.Id, delivery.AttemptNumber, decision.NextRetryAt!.Value - finishedAt);
    }

    /// <summary>The signed request of one attempt. <c>webhook-timestamp</c> is this attempt's; the body is the stored one.</summary>
    internal static WebhookRequest BuildRequest(ClaimedDelivery delivery, DateTimeOffset now) =>
        SignedWebhook.Create(delivery.Url, delivery.Payload, delivery.EventType, delivery.Id, delivery.EventId,
            SignedWebhook.ActiveSecrets(delivery.Secret, delivery.PreviousSecret, delivery.PreviousSecretExpiresAt, now),
            delivery.TimeoutSeconds, now);

    /// <summary>Success on 2xx; failed on 410 Gone (and the subscription is disabled) or when no attempt is left; else retrying.</summary>
    internal static AttemptDecision Decide(ClaimedDelivery delivery, WebhookResponse response, DateTimeOffset now)
    {
        if (response.IsSuccess)
            return new(DeliveryStatus.Success, null, false);
        if (response.StatusCode == 410)
            return new(DeliveryStatus.Failed, null, true);
        if (delivery.AttemptNumber >= delivery.MaxAttempts)
            return new(DeliveryStatus.Failed, null, false);
        return new(DeliveryStatus.Retrying, now + RetrySchedule.DelayAfter(delivery.AttemptNumber, response.RetryAfter), false);
    }
}

/// <summary>The <c>webhook-delivery</c> endpoint: broker-held redelivery, concurrency from <see cref="DeliveryOptions"/>.</summary>
public sealed class DeliveryConsumerDefinition : ConsumerDefinition<DeliveryConsumer>
{
    /// <summary>The queue of <see cref="DeliverWebhook"/> messages.</summary>
    public const string Queue = "webhook-delivery";

    /// <summary>Sets the endpoint name.</summary>
    public DeliveryConsumerDefinition() => EndpointName = Queue;

    /// <inheritdoc />
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<DeliveryConsumer> consumerConfigurator, IRegistrationContext context)
    {
        var options = context.GetRequiredService<IOptions<DeliveryOptions>>().Value;
        MessagingExtensions.ConfigureEndpoint(endpointConfigurator);
        endpointConfigurator.ConcurrentMessageLimit = options.ConcurrentMessageLimit;
        if (endpointConfigurator is IRabbitMqReceiveEndpointConfigurator rabbit)
            rabbit.PrefetchCount = options.PrefetchCount;
        consumerConfigurator.Message<DeliverWebhook>(m => m.UseBrokerDelayedRedelivery(context.GetRequiredService<RabbitMqDelayTopology>(),
            r => r.SetRetryPolicy(filter => new WebhookRedeliveryPolicy(filter, MessagingExtensions.TransientRedeliveryLimit))));
    }
}
