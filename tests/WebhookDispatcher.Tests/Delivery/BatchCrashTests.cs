using Microsoft.EntityFrameworkCore;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A dispatcher killed (SIGKILL) while events of a batched subscription wait in its memory for
/// their batch: a second dispatcher process, on a virtual host of its own and sharing the
/// database, fans the events out and dies; the test host's sweep (another replica) forms their
/// batch. Nothing is lost and each event is sent once.
/// </summary>
[NonParallelizable]
public sealed class BatchCrashTests
{
    [Test]
    public async Task Events_waiting_in_a_killed_dispatchers_batch_are_swept_into_one_by_another_replica()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(x => x.Id == s.Id).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.BatchMaxEvents, 100).SetProperty(x => x.BatchMaxWaitMs, 10_000).SetProperty(x => x.BatchMaxBytes, 262_144)));
        var type = EventCatalog.For<EmailReceived>();
        var eventIds = Enumerable.Range(0, 3).Select(_ => Guid.NewGuid()).ToList();
        var vhost = "batch-crash-" + Guid.NewGuid().ToString("N")[..8];
        await RabbitManagement.CreateVirtualHostAsync(vhost);
        try
        {
            var doomed = ChildProcess.Start("dotnet", ["exec", "WebhookDispatcher.dll", "--urls", "http://127.0.0.1:0"],
                AppContext.BaseDirectory, new Dictionary<string, string>
                {
                    ["ASPNETCORE_ENVIRONMENT"] = "Testing",
                    ["ConnectionStrings__Postgres"] = TestInfrastructure.Postgres,
                    ["ConnectionStrings__RabbitMq"] = RabbitManagement.AmqpUri(vhost),
                    ["Auth__SigningKey"] = TestTokens.SigningKey,
                    ["Sealing__MainKey"] = TestTokens.SealingKey,
                    ["Delivery__AllowPrivateNetworks"] = "true",
                });
            await using (doomed)
            {
                Assert.That(await doomed.WaitForOutputAsync("Application started", TimeSpan.FromSeconds(60)), Is.True, doomed.Output);
                foreach (var id in eventIds)
                    Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(type), RawEvents.Envelope(type, EventSchemas.ExampleMessage(type, user, id)),
                        virtualHost: vhost), Is.True);
                Assert.That(await Dispatcher.EventuallyAsync(async () =>
                    (await Dispatcher.DeliveriesAsync(s.Id)).Count(d => d.Status == DeliveryStatus.Batched && d.BatchId == null) == 3,
                    TimeSpan.FromSeconds(60)), Is.True, "the doomed dispatcher fanned the three events out; they wait for their batch");
                Assert.That(receiver.Requests, Is.Empty);
            } // killed (SIGKILL), its forming batch with it

            Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(90)), Is.True, "another replica's sweep formed and sent the batch");
            Assert.That(await Dispatcher.EventuallyAsync(async () =>
                (await Dispatcher.DeliveriesAsync(s.Id)).All(d => d.Status == DeliveryStatus.Success), TimeSpan.FromSeconds(90)), Is.True);
            var body = System.Text.Json.JsonDocument.Parse(receiver.Requests.Single().Body).RootElement;
            Assert.That(body.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("id").GetGuid()), Is.EquivalentTo(eventIds),
                "one batch, every event once");
        }
        finally
        {
            await RabbitManagement.DeleteVirtualHostAsync(vhost);
        }
    }
}
