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

    /// <summary>A <c>task.updated</c> of <paramref name="taskId"/> that occurred now (a batch's order is the time it was formed).</summary>
    private static Notely.Events.TaskUpdated Now(string user, string taskId, string title) => new()
    {
        EventId = Guid.NewGuid(), UserId = user, OccurredAt = DateTimeOffset.UtcNow, TaskId = taskId, Title = title, ChangedFields = ["title"],
    };

    private static Task SetBatchAsync(Guid subscriptionId, int? maxEvents, int? maxWaitMs) =>
        Dispatcher.QueryAsync(db => db.Subscriptions.Where(x => x.Id == subscriptionId).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.BatchMaxEvents, maxEvents).SetProperty(x => x.BatchMaxWaitMs, maxWaitMs)
            .SetProperty(x => x.BatchMaxBytes, maxEvents == null ? null : 256 * 1024)));

    /// <summary>The titles a request carries: a batch's events' or a single delivery's.</summary>
    private static List<string> Titles(ReceivedRequest r)
    {
        var root = JsonDocument.Parse(r.Body).RootElement;
        var events = root.GetProperty("event_type").GetString() == "batch" ? [.. root.GetProperty("events").EnumerateArray()] : new List<JsonElement> { root };
        return [.. events.Select(e => e.GetProperty("data").GetProperty("title").GetString()!)];
    }

    [Test]
    public async Task Batching_turned_on_while_a_key_retries_its_batch_waits_for_that_key()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        await Dispatcher.PublishAsync(Now(user, "k0", "before"));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the single delivery's first attempt (answered 500)");

        await SetBatchAsync(s.Id, 5, 0);
        await Dispatcher.PublishAsync(Now(user, "k0", "after-1"));
        await Dispatcher.PublishAsync(Now(user, "k0", "after-2"));

        int Carrying(string title) => receiver.Requests.Count(r => Titles(r).Contains(title));
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Carrying("after-1") >= 1 && Carrying("after-2") >= 1), Patience), Is.True);
        var titles = receiver.Requests.Select(Titles).ToList();
        var retried = titles.FindLastIndex(t => t.Contains("before"));
        Assert.Multiple(() =>
        {
            Assert.That(retried, Is.GreaterThan(0), "the earlier event went again after its 500");
            Assert.That(titles.FindIndex(t => t.Contains("after-1") || t.Contains("after-2")), Is.GreaterThan(retried),
                $"nothing later of the key before its retry succeeded: {string.Join(" | ", titles.Select(t => string.Join(",", t)))}");
        });
    }

    // Late: the single event occurred after the batch's events but before the batch was formed
    // (it was stored late, or was still settling); it comes after them all the same.
    [TestCase(false, TestName = "Batching_turned_off_while_a_batch_retries_the_single_deliveries_wait_for_it")]
    [TestCase(true, TestName = "Batching_turned_off_while_a_batch_retries_a_single_delivery_of_an_event_that_occurred_before_the_batch_was_formed_waits_for_it")]
    public async Task Batching_turned_off_while_a_batch_retries_the_single_deliveries_wait_for_it(bool late)
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        await SetBatchAsync(s.Id, 2, 200);
        var t0 = DateTimeOffset.UtcNow;
        await Dispatcher.PublishAsync(Now(user, "k0", "batched-1") with { OccurredAt = t0 });
        await Dispatcher.PublishAsync(Now(user, "k0", "batched-2") with { OccurredAt = t0.AddMilliseconds(1) });
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the batch's first attempt (answered 500)");

        await SetBatchAsync(s.Id, null, null);
        var single = Now(user, "k0", "single");
        await Dispatcher.PublishAsync(late ? single with { OccurredAt = t0.AddMilliseconds(2) } : single);

        int Carrying(string title) => receiver.Requests.Count(r => Titles(r).Contains(title));
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Carrying("single") >= 1), Patience), Is.True);
        var titles = receiver.Requests.Select(Titles).ToList();
        var lastBatched = titles.FindLastIndex(t => t.Contains("batched-1") || t.Contains("batched-2"));
        Assert.Multiple(() =>
        {
            Assert.That(Carrying("batched-1"), Is.GreaterThanOrEqualTo(2), "the batch went again after its 500");
            Assert.That(titles.FindIndex(t => t.Contains("single")), Is.GreaterThan(lastBatched),
                $"the single delivery waited for the batch: {string.Join(" | ", titles.Select(t => string.Join(",", t)))}");
        });
    }

    [Test]
    public async Task Batching_turned_off_through_the_API_while_events_wait_for_their_batch_sends_them_before_the_next_event_of_their_key()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        await SetBatchAsync(s.Id, 5, 10_000); // they would wait 10 s for company
        await Dispatcher.PublishAsync(Now(user, "k0", "waiting-1"));
        await Dispatcher.PublishAsync(Now(user, "k0", "waiting-2"));
        Assert.That(await Dispatcher.EventuallyAsync(() => Dispatcher.QueryAsync(db =>
            db.Deliveries.CountAsync(d => d.SubscriptionId == s.Id && d.Status == DeliveryStatus.Batched)).ContinueWith(t => t.Result == 2), Patience),
            Is.True, "control: both wait for their batch");

        using var api = TestTokens.Client(user);
        var patched = await Api.ApiClient.PatchJsonAsync(api, $"/api/webhooks/{s.Id}", """{"batch": null}""");
        Assert.That(patched.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.OK), await patched.Content.ReadAsStringAsync());
        await Dispatcher.PublishAsync(Now(user, "k0", "single"));

        Assert.That(await receiver.WaitForAsync(3, Patience), Is.True, "all three arrive");
        var titles = receiver.Requests.SelectMany(Titles).ToList();
        Assert.That(titles, Is.EqualTo(new[] { "waiting-1", "waiting-2", "single" }), "one by one, in the order they occurred");
    }

    [Test]
    public async Task A_smaller_max_events_on_an_ordered_subscription_forms_the_waiting_events_batches_at_once_not_after_the_sweep()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await Dispatcher.SubscribeAsync(user, receiver.Url, ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        await SetBatchAsync(s.Id, 10, 10_000);
        for (var i = 1; i <= 7; i++) await Dispatcher.PublishAsync(Now(user, "k0", $"before-{i}"));
        Assert.That(await Dispatcher.EventuallyAsync(() => Dispatcher.QueryAsync(db =>
            db.Deliveries.CountAsync(d => d.SubscriptionId == s.Id && d.Status == DeliveryStatus.Batched)).ContinueWith(t => t.Result == 7), Patience),
            Is.True, "control: all seven wait for their batch");
        // Settled and buffered (the settle time is 1 s by default), then the limit shrinks and one more comes.
        await Task.Delay(TimeSpan.FromSeconds(2));
        await SetBatchAsync(s.Id, 3, 10_000);
        await Dispatcher.PublishAsync(Now(user, "k0", "after"));

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(receiver.Requests.Sum(r => Titles(r).Count) >= 7), Patience), Is.True);
        var requests = receiver.Requests.ToList();
        var carrying = requests.Where(r => Titles(r).Any(t => t.StartsWith("before-", StringComparison.Ordinal))).ToList();
        var spread = carrying[^1].ArrivedAt - carrying[0].ArrivedAt;
        Assert.Multiple(() =>
        {
            Assert.That(carrying.All(r => Titles(r).Count <= 3), Is.True, "the new max_events applies");
            Assert.That(requests.SelectMany(Titles).Take(7), Is.EqualTo(Enumerable.Range(1, 7).Select(i => $"before-{i}")), "in order");
            // Left to the sweep, the rest would have come max_wait_ms (10 s) plus its grace (5 s) later.
            Assert.That(spread, Is.LessThan(TimeSpan.FromSeconds(10)), $"the earlier events' batches went one after another: {spread}");
        });
    }
}
