using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// The event payload cap (<c>Delivery:MaxEventBytes</c>, 262,144 bytes here, the default), on the
/// shared dispatcher: an event over it is parked in <c>webhook-fan-out_error</c> at once with its
/// size and the cap, nothing is stored or delivered for it, and the same user's next event is
/// delivered; an event of exactly the cap arrives byte for byte and its signatures verify.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class EventSizeTests
{
    private const string ErrorQueue = "webhook-fan-out_error";
    private const int Cap = EventSizeLimit.DefaultMaxEventBytes;
    private static readonly EventTypeInfo EmailReceivedType = EventCatalog.For<EmailReceived>();

    [Test]
    public async Task An_event_whose_payload_is_exactly_the_cap_is_delivered_byte_exact_and_its_signatures_verify()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var evt = WithPayloadOf(user, Cap);

        await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True, "the event at the cap is delivered");
        var request = receiver.Requests[0];
        Assert.Multiple(() =>
        {
            Assert.That(request.Body, Has.Length.EqualTo(Cap));
            Assert.That(request.Body, Is.EqualTo(Encoding.UTF8.GetBytes(WebhookPayload.Build(evt))), "byte for byte the payload");
            Assert.That(JsonNode.Parse(request.Body)!["data"]!["body_preview"]!.GetValue<string>(), Is.EqualTo(evt.BodyPreview));
            Assert.That(Signatures.LegacyVerifies(request, subscription.Secret), Is.True, "X-Webhook-Signature");
            Assert.That(Signatures.StandardVerifies(request, subscription.Secret), Is.True, "webhook-signature");
        });
    }

    [Test]
    public async Task An_event_whose_payload_is_one_byte_over_the_cap_is_parked_at_once_and_the_next_event_is_delivered()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var bad = WithPayloadOf(user, Cap + 1);

        var parked = await PublishBadThenGoodAsync(user, receiver, JsonSerializer.SerializeToNode(bad, EventSchemas.MessageJsonOptions)!);

        var headers = parked["properties"]!["headers"]!;
        var stored = (await Dispatcher.DeliveriesAsync(subscription.Id)).Select(d => d.EventId).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(headers["MT-Fault-Message"]?.GetValue<string>(), Is.EqualTo(
                "The event's payload is 262,145 bytes of JSON; the cap is 262,144 bytes (Delivery:MaxEventBytes). " +
                "Nothing was delivered for it; send large content as a link."));
            Assert.That(headers["MT-Fault-ExceptionType"]?.GetValue<string>(), Does.EndWith(nameof(EventTooLargeException)));
            Assert.That(headers["MT-Redelivery-Count"], Is.Null, "parked at once, not after redelivery rounds");
            Assert.That(headers["MT-Reason"]?.GetValue<string>(), Is.EqualTo("fault"));
            Assert.That(stored, Does.Not.Contain(bad.EventId),
                "no delivery stored for the event over the cap");
        });
    }

    [Test]
    public async Task An_event_far_over_the_cap_is_parked_unread_with_its_size_and_the_next_event_is_delivered()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var message = EventSchemas.ExampleMessage(EmailReceivedType, user, Guid.NewGuid()).AsObject();
        message["bodyPreview"] = new string('x', 2 * 1024 * 1024);
        // Also unreadable (a required field missing): the reason is the size, so it was never read.
        message.Remove("date");

        var parked = await PublishBadThenGoodAsync(user, receiver, message);

        var bytes = parked["payload_bytes"]!.GetValue<long>();
        Assert.That(bytes, Is.GreaterThan(EventSizeLimit.MaxReceivedBytes(Cap)));
        var headers = parked["properties"]!["headers"]!;
        var stored = await Dispatcher.DeliveriesAsync(subscription.Id);
        Assert.Multiple(() =>
        {
            Assert.That(headers["MT-Fault-Message"]?.GetValue<string>(), Is.EqualTo(
                $"The event's message is {bytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} bytes as received; the cap is 262,144 bytes of payload (Delivery:MaxEventBytes), " +
                "and a message over 1,114,112 bytes (4 × the cap + 64 KiB for the envelope) is parked without being read. " +
                "Nothing was delivered for it; send large content as a link."));
            Assert.That(headers["MT-Redelivery-Count"], Is.Null, "parked at once, not after redelivery rounds");
            Assert.That(headers["MT-Reason"]?.GetValue<string>(), Is.EqualTo("fault"));
            Assert.That(stored, Has.Count.EqualTo(1), "only the small event was stored");
        });
    }

    [Test]
    public async Task An_event_over_the_RabbitMQ_clients_default_64_MiB_is_parked_and_the_dispatcher_keeps_consuming()
    {
        // RabbitMQ accepts 128 MiB by default; its .NET client closes the connection on anything
        // over 64 MiB unless told otherwise, and the broker would hand the message back forever.
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var message = EventSchemas.ExampleMessage(EmailReceivedType, user, Guid.NewGuid()).AsObject();
        message["bodyPreview"] = new string('x', 64 * 1024 * 1024 + 1024);
        var badId = Guid.NewGuid();
        var body = Encoding.UTF8.GetBytes(RawEvents.Envelope(EmailReceivedType, message, badId));
        message["bodyPreview"] = null;

        var factory = new RabbitMQ.Client.ConnectionFactory { Uri = new Uri(TestInfrastructure.RabbitMq) };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new RabbitMQ.Client.CreateChannelOptions(true, true)))
        {
            await channel.BasicPublishAsync(RawEvents.Exchange(EmailReceivedType), "", mandatory: true,
                new RabbitMQ.Client.BasicProperties { ContentType = "application/vnd.masstransit+json", MessageId = badId.ToString(), Persistent = true }, body);
        }
        var good = EventSchemas.ExampleMessage(EmailReceivedType, user, Guid.NewGuid());
        Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceivedType), RawEvents.Envelope(EmailReceivedType, good)), Is.True);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(60)), Is.True, "the small event after the large one is delivered");
        JsonNode? parked = null;
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            parked = (await RabbitManagement.PeekAsync(ErrorQueue, truncate: 100)).FirstOrDefault(m => m["properties"]?["message_id"]?.GetValue<string>() == badId.ToString());
            return parked is not null;
        }, TimeSpan.FromSeconds(60)), Is.True, $"the large event is in {ErrorQueue}");
        Assert.Multiple(() =>
        {
            Assert.That(parked!["payload_bytes"]!.GetValue<long>(), Is.EqualTo(body.LongLength), "parked unchanged");
            Assert.That(parked["properties"]!["headers"]!["MT-Fault-Message"]?.GetValue<string>(),
                Does.StartWith($"The event's message is {body.LongLength.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} bytes as received;"));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "nothing was delivered for the large event");
        });
    }

    /// <summary>
    /// Publishes <paramref name="badMessage"/> raw, then a small event of the same user; asserts
    /// that the small one alone is delivered and returns the bad one as parked in <c>_error</c>.
    /// </summary>
    private static async Task<JsonNode> PublishBadThenGoodAsync(string user, TestReceiver receiver, JsonNode badMessage)
    {
        var badId = Guid.NewGuid();
        Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceivedType), RawEvents.Envelope(EmailReceivedType, badMessage, badId),
            messageId: badId.ToString()), Is.True);
        var good = EventSchemas.ExampleMessage(EmailReceivedType, user, Guid.NewGuid());
        Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceivedType), RawEvents.Envelope(EmailReceivedType, good)), Is.True);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True, "the small event after the large one is delivered");
        Assert.That(JsonNode.Parse(receiver.Requests[0].Body)!["id"]!.GetValue<Guid>(), Is.EqualTo(good["eventId"]!.GetValue<Guid>()));
        JsonNode? parked = null;
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            parked = (await RabbitManagement.PeekAsync(ErrorQueue, truncate: 1000)).FirstOrDefault(m => m["properties"]?["message_id"]?.GetValue<string>() == badId.ToString());
            return parked is not null;
        }, TimeSpan.FromSeconds(30)), Is.True, $"the large event is in {ErrorQueue}");
        Assert.That(receiver.Requests, Has.Count.EqualTo(1), "nothing was delivered for the large event");
        return parked!;
    }

    /// <summary>
    /// An <c>email.received</c> event of <paramref name="user"/> whose payload is exactly
    /// <paramref name="payloadBytes"/> bytes of UTF-8, much of it two-byte characters: the cap
    /// counts bytes, not characters.
    /// </summary>
    private static EmailReceived WithPayloadOf(string user, int payloadBytes)
    {
        var evt = (EmailReceived)EventSchemas.Example(EmailReceivedType, user, Guid.NewGuid()) with { BodyPreview = "" };
        var fill = payloadBytes - Encoding.UTF8.GetByteCount(WebhookPayload.Build(evt));
        var twoByte = fill / 4;
        evt = evt with { BodyPreview = new string('é', twoByte) + new string('a', fill - 2 * twoByte) };
        Assert.That(Encoding.UTF8.GetByteCount(WebhookPayload.Build(evt)), Is.EqualTo(payloadBytes), "the test's own arithmetic");
        return evt;
    }
}
