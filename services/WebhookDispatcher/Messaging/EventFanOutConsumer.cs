using MassTransit;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// Turns one Notely event into one delivery per matching subscription and publishes a
/// <see cref="DeliverWebhook"/> for each. The inserts commit before anything is published (the
/// in-memory outbox releases publishes only when this consumer succeeded), and a redelivered or
/// re-published event inserts nothing new but re-publishes what is still unattempted.
/// </summary>
public sealed class EventFanOutConsumer<TEvent>(DeliveryStore store, TimeProvider time, ILogger<EventFanOutConsumer<TEvent>> logger)
    : IConsumer<TEvent> where TEvent : class, INotelyEvent
{
    private static readonly string EventType = EventCatalog.For<TEvent>().Name;

    /// <inheritdoc />
    public async Task Consume(ConsumeContext<TEvent> context)
    {
        var evt = context.Message;
        var payload = WebhookPayload.Build(evt);
        var ids = await store.FanOutAsync(evt.EventId, evt.UserId, EventType, payload, time.GetUtcNow(), context.CancellationToken);
        if (ids.Count > 0)
            await context.PublishBatch(ids.Select(id => new DeliverWebhook(id)), context.CancellationToken);
        WebhookTelemetry.EventsFannedOut.Add(1, new KeyValuePair<string, object?>("event_type", EventType));
        logger.LogInformation("Event {EventId} ({EventType}) fanned out to {Count} delivery(ies)", evt.EventId, EventType, ids.Count);
    }
}

/// <summary>All fan-out consumers share the <c>webhook-fan-out</c> endpoint.</summary>
public sealed class EventFanOutConsumerDefinition<TEvent> : ConsumerDefinition<EventFanOutConsumer<TEvent>>
    where TEvent : class, INotelyEvent
{
    /// <summary>The queue every Notely event type is bound to.</summary>
    public const string Queue = "webhook-fan-out";

    /// <summary>Sets the endpoint name.</summary>
    public EventFanOutConsumerDefinition() => EndpointName = Queue;

    /// <inheritdoc />
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<EventFanOutConsumer<TEvent>> consumerConfigurator, IRegistrationContext context)
    {
        MessagingExtensions.ConfigureEndpoint(endpointConfigurator);
        consumerConfigurator.Message<TEvent>(m => m.UseBrokerDelayedRedelivery(context.GetRequiredService<RabbitMqDelayTopology>(),
            r => r.SetRetryPolicy(filter => new WebhookRedeliveryPolicy(filter, MessagingExtensions.TransientRedeliveryLimit))));
        consumerConfigurator.UseInMemoryOutbox(context);
    }
}
