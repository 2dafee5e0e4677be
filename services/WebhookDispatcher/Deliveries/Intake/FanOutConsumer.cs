using MassTransit;
using Microsoft.Extensions.Options;
using Notely.Events;
using WebhookDispatcher.Observability;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Turns one Notely event into one delivery per matching subscription. The payload is built
/// here, once; the rows are written together with those of other events arriving meanwhile
/// (one statement per batch), and the event is acknowledged only once they are committed. A
/// redelivered event inserts nothing new but queues what is still unattempted. A payload over
/// the cap (<see cref="EventSizeLimit"/>) parks the event at once, before anything is stored.
/// </summary>
public sealed class FanOutConsumer<TEvent>(FanOutBatcher batcher, IOptions<DeliveryOptions> options) : IConsumer<TEvent>
    where TEvent : class, INotelyEvent
{
    private static readonly string EventType = EventCatalog.For<TEvent>().Name;

    /// <inheritdoc />
    /// <exception cref="EventTooLargeException">The payload is over <see cref="DeliveryOptions.MaxEventBytes"/>.</exception>
    public async Task Consume(ConsumeContext<TEvent> context)
    {
        var evt = context.Message;
        // The broker's redelivered flag (a consumer died or lost its channel holding it) or a
        // redelivery after our own fault: it may have been fanned out already.
        var maybeSeen = context.ReceiveContext.Redelivered || context.GetRedeliveryCount() > 0 || context.GetRetryAttempt() > 0;
        var payload = WebhookPayload.Build(evt);
        EventSizeLimit.EnsureWithinCap(payload, options.Value.MaxEventBytes);
        await batcher.FanOutAsync(new FanOutEvent(evt.EventId, evt.UserId, EventType, payload, maybeSeen, evt.OccurredAt, OrderingKeys.Of(evt)));
        WebhookTelemetry.EventsFannedOut.Add(1, new KeyValuePair<string, object?>("event_type", EventType));
    }
}
