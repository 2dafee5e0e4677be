using MassTransit;
using Microsoft.Extensions.Options;
using Notely.Events;
using WebhookDispatcher.Messaging;
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
        if (IdentityProblem(evt) is { } problem) throw new UnprocessableMessageException(problem);
        // The broker's redelivered flag (a consumer died or lost its channel holding it) or a
        // redelivery after our own fault: it may have been fanned out already.
        var maybeSeen = context.ReceiveContext.Redelivered || context.GetRedeliveryCount() > 0 || context.GetRetryAttempt() > 0;
        var payload = WebhookPayload.Build(evt);
        EventSizeLimit.EnsureWithinCap(payload, options.Value.MaxEventBytes);
        await batcher.FanOutAsync(new FanOutEvent(evt.EventId, evt.UserId, EventType, payload, maybeSeen, evt.OccurredAt, OrderingKeys.Of(evt)));
        WebhookTelemetry.EventsFannedOut.Add(1, new KeyValuePair<string, object?>("event_type", EventType));
    }

    /// <summary>
    /// Why the event's identity cannot be used, in the reasons' format (docs/publishing.md): a user
    /// id no subscription can have (the API's rule, <see cref="Security.AuthExtensions.IsValidUserId"/>)
    /// would be dropped unseen, and the nil UUID as event id would make unrelated events one
    /// (it is the idempotency key). Null when both are fine.
    /// </summary>
    internal static string? IdentityProblem(TEvent evt)
    {
        var contract = typeof(TEvent).Name;
        if (!Security.AuthExtensions.IsValidUserId(evt.UserId))
            return $"{contract} field $.userId: expected a user id of 1 to {Security.AuthExtensions.MaxUserIdLength} characters without spaces at either end " +
                   $"or control characters, found {IncomingEventReasons.Found(System.Text.Json.JsonSerializer.SerializeToElement(evt.UserId))}.";
        if (evt.EventId == Guid.Empty)
            return $"{contract} field $.eventId: expected a UUID other than the nil UUID (it is the event's idempotency key), found \"{Guid.Empty}\".";
        return null;
    }
}
