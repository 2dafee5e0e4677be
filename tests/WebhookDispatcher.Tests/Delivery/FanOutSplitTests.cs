using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A fan-out batch whose statement fails because of one event is stored event by event: the
/// others are delivered at once, with no trip through the broker's delay queues, and the one that
/// can never be stored is parked with the reason.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class FanOutSplitTests
{
    private static readonly EventTypeInfo EmailReceived = EventCatalog.For<EmailReceived>();

    [Test]
    public async Task A_batch_holding_one_event_that_cannot_be_stored_delivers_the_others_without_a_redelivery()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        });
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var delayQueue = RabbitMqTopology.DelayExchangeName(DeliveryQueues.FanOut, TimeSpan.FromSeconds(2));

        // Watch the first redelivery level the whole time: an event sent back through the broker waits there 2 s.
        using var watching = new CancellationTokenSource();
        var redelivered = Task.Run(async () =>
        {
            while (!watching.IsCancellationRequested)
            {
                if ((await RabbitManagement.CountAsync(delayQueue, dispatcher.VirtualHost))?.Messages > 0) return true;
                await Task.Delay(100);
            }
            return false;
        });

        var badId = Guid.NewGuid();
        var bad = EventSchemas.ExampleMessage(EmailReceived, user, Guid.NewGuid()).AsObject();
        // Valid JSON the consumer reads, but its ordering key (data.email_id) is text PostgreSQL cannot hold.
        bad["emailId"] = "email-\u0000x";
        var publishes = new List<Task<bool>>
        {
            RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceived), RawEvents.Envelope(EmailReceived, bad, badId),
                messageId: badId.ToString(), virtualHost: dispatcher.VirtualHost),
        };
        var good = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            var message = EventSchemas.ExampleMessage(EmailReceived, user, Guid.NewGuid()).AsObject();
            good.Add(message["eventId"]!.GetValue<Guid>());
            publishes.Add(RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceived), RawEvents.Envelope(EmailReceived, message),
                virtualHost: dispatcher.VirtualHost));
        }
        Assert.That(await Task.WhenAll(publishes), Is.All.True, "routed");

        var arrived = await receiver.WaitForAsync(good.Count, TimeSpan.FromSeconds(90));
        Assert.That(arrived, Is.True, $"every good event was delivered ({receiver.Requests.Count} of {good.Count} arrived)");
        JsonNode? parked = null;
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            parked = (await RabbitManagement.PeekAsync("webhook-fan-out_error", virtualHost: dispatcher.VirtualHost, truncate: 1000))
                .FirstOrDefault(m => m["properties"]?["message_id"]?.GetValue<string>() == badId.ToString());
            return parked is not null;
        }, TimeSpan.FromSeconds(30)), Is.True, "the event that cannot be stored is parked");
        await watching.CancelAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(await redelivered, Is.False, "nothing went back through the broker");
            Assert.That(receiver.Requests.Select(r => JsonNode.Parse(r.Body)!["id"]!.GetValue<Guid>()), Is.EquivalentTo(good));
            Assert.That(parked!["properties"]!["headers"]!["MT-Fault-Message"]!.GetValue<string>(),
                Does.StartWith("The event could not be stored: the database refused its data (22021"));
            Assert.That(parked!["properties"]!["headers"]!["MT-Redelivery-Count"], Is.Null, "parked at once");
        });
    }
}
