using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A subscription both ordered and batched (decisions 0014 and 0015): its batches are formed in
/// (occurred_at, id) order from settled events and go one at a time, so a retried batch goes again
/// before the next one and per-key order holds across batches.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class OrderedBatchTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    private static List<JsonElement> EventsOf(ReceivedRequest request) =>
        [.. JsonDocument.Parse(request.Body).RootElement.GetProperty("events").EnumerateArray()];

    [TestCase(SubscriptionOrdering.PerKey)]
    [TestCase(SubscriptionOrdering.Strict)]
    public async Task Batches_go_one_at_a_time_in_occurred_order_and_a_retried_batch_goes_again_before_the_next(string ordering)
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: ordering);
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(x => x.Id == s.Id).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.BatchMaxEvents, 3).SetProperty(x => x.BatchMaxWaitMs, 0).SetProperty(x => x.BatchMaxBytes, 256 * 1024)));
        // Published in another order than they occurred, within the settle time: the batches follow occurred_at.
        var events = new[] { ("a", 3), ("b", 1), ("a", 1), ("b", 2), ("a", 2), ("a", 4), ("b", 3) }
            .Select(x => OrderingTests.TaskUpdated(user, x.Item1, x.Item2)).ToList();
        foreach (var e in events) await Dispatcher.PublishAsync(e);

        // The first request was answered 500; every event must arrive in the requests after it.
        int Delivered() => receiver.Requests.Skip(1).Sum(r => EventsOf(r).Count);
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Delivered() >= events.Count), Patience), Is.True,
            $"all {events.Count} events arrive after the failed first batch; {Delivered()} did");
        var requests = receiver.Requests;
        var delivered = requests.Skip(1).SelectMany(EventsOf)
            .Select(e => (Id: e.GetProperty("id").GetGuid(), At: e.GetProperty("created_at").GetDateTimeOffset(),
                Task: e.GetProperty("data").GetProperty("task_id").GetString()!))
            .ToList();
        Assert.Multiple(() =>
        {
            Assert.That(requests[1].Body, Is.EqualTo(requests[0].Body), "the failed batch went again, byte-identical, before any other batch");
            Assert.That(delivered.Select(d => d.Id), Is.EquivalentTo(events.Select(e => e.EventId)), "every event exactly once after the retry");
            Assert.That(requests.All(r => EventsOf(r).Count <= 3), Is.True, "max_events 3");
            Assert.That(delivered.Select(d => d.At), Is.Ordered, "the batches and the events in them follow occurred_at");
            foreach (var key in delivered.GroupBy(d => d.Task))
                Assert.That(key.Select(d => d.At), Is.Ordered.And.Unique, $"task {key.Key} in order");
        });
    }
}
