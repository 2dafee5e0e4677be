using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MassTransit.Serialization;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;
using WebhookDispatcher.Tests.Unit;

namespace WebhookDispatcher.Tests.Examples;

/// <summary>
/// The publisher examples of docs/publishing.md, run as a user would run them against the real
/// broker: each publishes all 17 event types (timestamps with various offsets, as other languages
/// write them), and every event must arrive with exactly the payload the dispatcher builds.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class PublisherExampleTests
{
    private static readonly JsonSerializerOptions Incoming = IncomingEventJson.Configure(new JsonSerializerOptions(SystemTextJsonMessageSerializer.Options));

    [TestCase("python3", "docs/examples/python/publish_event.py", TestName = "The_Python_pika_publisher_example_publishes_all_17_event_types_and_each_is_delivered_with_the_right_payload")]
    [TestCase("node", "docs/examples/node/publish-event.js", TestName = "The_Node_amqplib_publisher_example_publishes_all_17_event_types_and_each_is_delivered_with_the_right_payload")]
    public async Task Publisher_example_delivers_all_event_types(string runtime, string script)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, [.. EventCatalog.All.Select(t => t.Name)]);
        var expected = new Dictionary<Guid, string>();
        var lines = new StringBuilder();
        var offsets = new[] { "+02:00", "Z", "-05:00", "+05:30", "" };
        var i = 0;
        foreach (var type in EventCatalog.All)
        {
            var message = EventSchemas.ExampleMessage(type, user, Guid.NewGuid()).AsObject();
            foreach (var property in TimestampTests.TimestampProperties(type.ContractType))
            {
                var offset = offsets[i++ % offsets.Length];
                var instant = DateTimeOffset.Parse(message[TimestampTests.Camel(property.Name)]!.GetValue<string>()).AddTicks(1_234_567);
                var local = offset is "" or "Z" ? instant : instant.ToOffset(TimeSpan.Parse(offset.TrimStart('+')));
                message[TimestampTests.Camel(property.Name)] = local.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff") + offset;
            }
            // What the dispatcher must send: the payload of the message as the contract reads it.
            var evt = (INotelyEvent)message.Deserialize(type.ContractType, Incoming)!;
            expected[evt.EventId] = WebhookPayload.Build(evt);
            lines.AppendLine(new JsonObject { ["type"] = type.ContractType.Name, ["message"] = message }.ToJsonString());
        }

        await using var publisher = ChildProcess.Start(runtime == "python3" ? Repo.Python : runtime, [Repo.Path(script), "--stdin"], Repo.Root,
            new Dictionary<string, string> { ["AMQP_URL"] = TestInfrastructure.RabbitMq }, lines.ToString());
        Assert.That(await publisher.WaitForExitAsync(TimeSpan.FromSeconds(60)), Is.True, publisher.Output);
        Assert.That(publisher.ExitCode, Is.Zero, publisher.Output);

        Assert.That(await receiver.WaitForAsync(17, TimeSpan.FromSeconds(60)), Is.True, $"17 deliveries, got {receiver.Requests.Count}");
        // Control: the 17 deliveries are all the rows there are, each succeeded at its one attempt,
        // so no further POST can come (an 18th would need a row or an attempt of its own).
        Assert.That(await Dispatcher.EventuallyAsync(async () => (await Dispatcher.DeliveriesAsync(subscription.Id)) is var rows
            && rows.Count == 17 && rows.All(d => d is { Status: DeliveryStatus.Success, AttemptCount: 1 }), TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(receiver.Requests, Has.Count.EqualTo(17));
        Assert.Multiple(() =>
        {
            foreach (var request in receiver.Requests)
            {
                var body = Encoding.UTF8.GetString(request.Body);
                var id = JsonNode.Parse(body)!["id"]!.GetValue<Guid>();
                Assert.That(expected.ContainsKey(id), Is.True, body);
                Assert.That(body, Is.EqualTo(expected.GetValueOrDefault(id)), "byte for byte the payload of the published event");
                Assert.That(JsonNode.Parse(body)!["created_at"]!.GetValue<string>(), Does.Match(UtcTimestamp.Pattern));
            }
        });
    }

    [TestCase("python3", "docs/examples/python/publish_event.py", "UnroutableError", TestName = "The_Python_publisher_example_fails_loudly_when_no_queue_is_bound_to_the_exchange")]
    [TestCase("node", "docs/examples/node/publish-event.js", "no queue is bound", TestName = "The_Node_publisher_example_fails_loudly_when_no_queue_is_bound_to_the_exchange")]
    public async Task Publisher_example_fails_when_unroutable(string runtime, string script, string reason)
    {
        // A virtual host where the exchange exists but the dispatcher never bound its queue.
        var vhost = "unbound-" + Guid.NewGuid().ToString("N")[..8];
        await RabbitManagement.CreateVirtualHostAsync(vhost);
        try
        {
            await RabbitManagement.DeclareExchangeAsync(vhost, "Notely.Events:EmailReceived");
            await using var publisher = ChildProcess.Start(runtime == "python3" ? Repo.Python : runtime, [Repo.Path(script)], Repo.Root,
                new Dictionary<string, string> { ["AMQP_URL"] = RabbitManagement.AmqpUri(vhost) });

            Assert.That(await publisher.WaitForExitAsync(TimeSpan.FromSeconds(60)), Is.True, publisher.Output);
            Assert.That(publisher.ExitCode, Is.Not.Zero, publisher.Output);
            Assert.That(publisher.Output, Does.Contain(reason));
        }
        finally
        {
            await RabbitManagement.DeleteVirtualHostAsync(vhost);
        }
    }
}
