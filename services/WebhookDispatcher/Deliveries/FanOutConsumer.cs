using MassTransit;
using Notely.Events;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Turns one Notely event into one delivery per matching subscription. The payload is built
/// here, once; the rows are written together with those of other events arriving meanwhile
/// (one statement per batch), and the event is acknowledged only once they are committed. A
/// redelivered event inserts nothing new but queues what is still unattempted.
/// </summary>
public sealed class FanOutConsumer<TEvent>(DeliveryEngine engine) : IConsumer<TEvent> where TEvent : class, INotelyEvent
{
    private static readonly string EventType = EventCatalog.For<TEvent>().Name;

    /// <inheritdoc />
    public async Task Consume(ConsumeContext<TEvent> context)
    {
        var evt = context.Message;
        await engine.FanOutAsync(new FanOutEvent(evt.EventId, evt.UserId, EventType, WebhookPayload.Build(evt)));
        WebhookTelemetry.EventsFannedOut.Add(1, new KeyValuePair<string, object?>("event_type", EventType));
    }
}
