using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Per-key order (decision 0014) with two replicas on the same broker virtual host and database:
/// either may fan out an event and claim any key's head; the gate, in the claim's SQL, holds
/// across them. Not parallel: the second replica takes a share of every endpoint's messages.
/// </summary>
[NonParallelizable]
public sealed class OrderingReplicaTests
{
    [Test]
    public async Task Two_replicas_keep_each_keys_deliveries_one_at_a_time_in_publish_order_through_retries()
    {
        await using var second = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        }, sharedBroker: true);
        const int keys = 5, eventsPerKey = 6;
        var user = Events.NewUser();
        var events = Enumerable.Range(0, eventsPerKey)
            .SelectMany(i => Enumerable.Range(0, keys).Select(k => OrderingTests.TaskUpdated(user, $"task-{k}", i))).ToList();
        var keyOf = events.ToDictionary(e => e.EventId, e => e.TaskId);
        // Every third event's first attempt fails: its retry travels through the broker to either replica.
        var failOnce = events.Where((_, i) => i % 3 == 0).Select(e => e.EventId).ToHashSet();
        var inFlight = new ConcurrentDictionary<string, int>();
        var overlaps = 0;
        var attempts = new ConcurrentDictionary<Guid, int>();
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            var evt = OrderingTests.EventOf(c);
            if (inFlight.AddOrUpdate(keyOf[evt], 1, (_, n) => n + 1) > 1) Interlocked.Increment(ref overlaps);
            try
            {
                // Long enough for independent deliveries of a key to overlap.
                await Task.Delay(50);
                c.Response.StatusCode = attempts.AddOrUpdate(evt, 1, (_, n) => n + 1) == 1 && failOnce.Contains(evt) ? 500 : 200;
            }
            finally
            {
                inFlight.AddOrUpdate(keyOf[evt], 0, (_, n) => n - 1);
            }
        });
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: SubscriptionOrdering.PerKey);

        // Published in order through both replicas' buses, alternately.
        for (var i = 0; i < events.Count; i++)
            await (i % 2 == 0 ? Dispatcher.PublishAsync(events[i]) : second.PublishAsync(events[i]));

        Assert.That(await Dispatcher.EventuallyAsync(async () => await Dispatcher.QueryAsync(db => db.Deliveries
            .CountAsync(d => d.SubscriptionId == subscription.Id && d.Status == DeliveryStatus.Success)) == events.Count, TimeSpan.FromSeconds(120)), Is.True);
        var arrivals = receiver.Requests.Select(OrderingTests.EventOf).ToList();
        Assert.Multiple(() =>
        {
            for (var k = 0; k < keys; k++)
            {
                var key = $"task-{k}";
                var expected = events.Where(e => e.TaskId == key).Select(e => e.EventId).ToList();
                Assert.That(arrivals.Where(id => keyOf[id] == key).Distinct(), Is.EqualTo(expected), $"{key}: in publish order");
            }
            Assert.That(overlaps, Is.Zero, "never two requests of one key at once");
            Assert.That(arrivals, Has.Count.EqualTo(events.Count + failOnce.Count), "control: each failing event was retried once, nothing else twice");
        });
    }
}
