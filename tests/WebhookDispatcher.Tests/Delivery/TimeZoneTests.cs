using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;
using WebhookDispatcher.Tests.Unit;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// The case end to end under a host zone that is not UTC: a second dispatcher process runs
/// with TZ=America/New_York on a virtual host of its own (sharing the database), and raw JSON
/// events — as a Python service would publish them — carry zone-less and offset timestamps.
/// </summary>
[NonParallelizable]
public sealed class TimeZoneTests
{
    [Test]
    public async Task Under_a_New_York_host_zone_every_timestamp_of_all_17_event_types_is_delivered_in_UTC()
    {
        Assert.That(File.Exists("/usr/share/zoneinfo/America/New_York"), Is.True, "the tz database (Debian package tzdata) is installed");
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, [.. EventCatalog.All.Select(t => t.Name)]);
        var vhost = "tz-" + Guid.NewGuid().ToString("N")[..8];
        await RabbitManagement.CreateVirtualHostAsync(vhost);
        try
        {
            await using var dispatcher = ChildProcess.Start("dotnet", ["exec", "WebhookDispatcher.dll", "--urls", "http://127.0.0.1:0"],
                AppContext.BaseDirectory, new Dictionary<string, string>
                {
                    ["TZ"] = "America/New_York",
                    ["ASPNETCORE_ENVIRONMENT"] = "Testing",
                    ["ConnectionStrings__Postgres"] = TestInfrastructure.Postgres,
                    ["ConnectionStrings__RabbitMq"] = RabbitManagement.AmqpUri(vhost),
                    ["Auth__SigningKey"] = TestTokens.SigningKey,
                    ["Sealing__MainKey"] = TestTokens.SealingKey,
                    ["Delivery__AllowPrivateNetworks"] = "true",
                    ["Reconciler__IntervalSeconds"] = "3600",
                });
            Assert.That(await dispatcher.WaitForOutputAsync("Application started", TimeSpan.FromSeconds(60)), Is.True, dispatcher.Output);

            var expected = new Dictionary<Guid, (EventTypeInfo Type, Dictionary<string, string> Timestamps)>();
            foreach (var type in EventCatalog.All)
            {
                var eventId = Guid.NewGuid();
                var message = EventSchemas.ExampleMessage(type, user, eventId).AsObject();
                var timestamps = new Dictionary<string, string>();
                var i = 0;
                foreach (var property in TimestampTests.TimestampProperties(type.ContractType))
                {
                    // The values: occurredAt without an offset is 10:00 UTC (not 10:00 in New
                    // York); the others alternate +02:00, zone-less and -05:00 for the same instants.
                    var utc = new DateTime(2026, 11, 30, 10, 0, 0).AddHours(i);
                    message[TimestampTests.Camel(property.Name)] = (i % 3) switch
                    {
                        0 => utc.ToString("yyyy-MM-dd'T'HH:mm:ss"),
                        1 => utc.AddHours(2).ToString("yyyy-MM-dd'T'HH:mm:ss") + "+02:00",
                        _ => utc.AddHours(-5).ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "-05:00",
                    };
                    timestamps[property.Name == nameof(INotelyEvent.OccurredAt) ? "created_at" : TimestampTests.Snake(property.Name)] =
                        utc.ToString("yyyy-MM-dd'T'HH:mm:ss") + ".000Z";
                    i++;
                }
                expected[eventId] = (type, timestamps);
                Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(type), RawEvents.Envelope(type, message), virtualHost: vhost),
                    Is.True, $"{type.Name} routed to the dispatcher's queue");
            }

            Assert.That(await receiver.WaitForAsync(17, TimeSpan.FromSeconds(60)), Is.True,
                $"17 deliveries; got {receiver.Requests.Count}. Dispatcher output:\n{dispatcher.Output}");
            Assert.Multiple(() =>
            {
                foreach (var request in receiver.Requests)
                {
                    var body = JsonNode.Parse(request.Body)!;
                    var (type, timestamps) = expected[body["id"]!.GetValue<Guid>()];
                    Assert.That(body["event_type"]!.GetValue<string>(), Is.EqualTo(type.Name));
                    foreach (var (field, value) in timestamps)
                    {
                        var actual = field == "created_at" ? body["created_at"] : body["data"]![field];
                        Assert.That(actual?.GetValue<string>(), Is.EqualTo(value), $"{type.Name} {field}");
                    }
                }
            });
        }
        finally
        {
            await RabbitManagement.DeleteVirtualHostAsync(vhost);
        }
    }
}
