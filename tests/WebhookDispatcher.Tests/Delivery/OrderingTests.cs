using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Ordered delivery (decision 0014) on the shared dispatcher: per key through a retry, another key
/// flowing beside a failing one, strict, a final failure skipped, a manual retry, and changes of
/// <c>ordering</c> with deliveries waiting. "Not sent yet" is always checked once a control (the
/// same event for a subscription with <c>ordering: none</c>) was delivered and the ordered copy had
/// settled: had the gate let it through, it would have arrived by then.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class OrderingTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 8, 0, 0, TimeSpan.Zero);

    /// <summary>A <c>task.updated</c> of <paramref name="taskId"/> that occurred <paramref name="second"/> seconds after a fixed time.</summary>
    internal static TaskUpdated TaskUpdated(string user, string taskId, int second) => new()
    {
        EventId = Guid.NewGuid(),
        UserId = user,
        OccurredAt = T0.AddSeconds(second),
        TaskId = taskId,
        Title = $"Task {taskId} at {second}",
        ChangedFields = ["title"],
    };

    /// <summary>The event id of a request (its <c>webhook-id</c>).</summary>
    internal static Guid EventOf(ReceivedRequest request) => Guid.Parse(request.Headers["webhook-id"]);

    /// <summary>The event id of a request being answered.</summary>
    internal static Guid EventOf(HttpContext context) => Guid.Parse(context.Request.Headers["webhook-id"].ToString());

    /// <summary>The events of the requests to <paramref name="path"/>, in arrival order.</summary>
    private static List<Guid> Arrivals(TestReceiver receiver, string path) => [.. receiver.To(path).Select(EventOf)];

    /// <summary>Waits until the control got <paramref name="evt"/> and the ordered copy has settled (a claim would have taken it by then).</summary>
    private static async Task WaitPastControlAsync(TestReceiver receiver, string control, Guid evt)
    {
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Arrivals(receiver, control).Contains(evt)), Patience), Is.True,
            "control: the unordered copy arrived");
        await Task.Delay(TimeSpan.FromMilliseconds(new DeliveryOptions().OrderingSettleMilliseconds) + TimeSpan.FromSeconds(1));
    }

    [Test]
    public async Task Per_key_a_retried_delivery_keeps_the_next_of_its_key_waiting_and_they_arrive_in_publish_order()
    {
        var first = Guid.Empty;
        await using var receiver = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            c.Response.StatusCode = attempt == 1 && EventOf(c) == first ? 500 : 200;
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/ordered", ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        var events = Enumerable.Range(0, 4).Select(i => TaskUpdated(user, "task-a", i)).ToList();
        first = events[0].EventId;

        foreach (var evt in events) await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(5, Patience, "/ordered"), Is.True);
        Assert.That(await Dispatcher.EventuallyAsync(async () => (await Dispatcher.DeliveriesAsync(subscription.Id)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True);
        var deliveries = await Dispatcher.DeliveriesAsync(subscription.Id);
        Assert.Multiple(() =>
        {
            Assert.That(Arrivals(receiver, "/ordered"), Is.EqualTo(new[] { first, first }.Concat(events.Skip(1).Select(e => e.EventId))),
                "the first event twice (500, then 200), then the others in publish order");
            Assert.That(deliveries.Select(d => d.OrderingKey).Distinct(), Is.EqualTo(new[] { "task_id:task-a" }));
            Assert.That(deliveries.Sum(d => d.AttemptCount), Is.EqualTo(5));
        });
    }

    [Test]
    public async Task Per_key_orders_by_when_events_occurred_not_by_when_they_were_stored()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        // A settle time far longer than two publishes take, on a dispatcher of its own.
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:OrderingSettleMilliseconds"] = "10000",
        });
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/ordered", ["task.updated"], ordering: SubscriptionOrdering.PerKey);
        var later = TaskUpdated(user, "task-b", 10);
        var earlier = TaskUpdated(user, "task-b", 5);

        // Stored out of order within the settle time: a redelivered or concurrently stored event.
        await dispatcher.PublishAsync(later);
        await dispatcher.PublishAsync(earlier);

        Assert.That(await receiver.WaitForAsync(2, Patience, "/ordered"), Is.True);
        Assert.That(Arrivals(receiver, "/ordered"), Is.EqualTo(new[] { earlier.EventId, later.EventId }));
    }

    [Test]
    public async Task Another_key_keeps_flowing_while_one_keys_receiver_answers_500()
    {
        var failing = Guid.Empty;
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = EventOf(c) == failing ? 500 : 200;
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        // Ten retries: the failing key stays unfinished for minutes, whatever the machine's pace.
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/ordered", ["task.updated"], retryCount: 10,
            ordering: SubscriptionOrdering.PerKey);
        var stuck = TaskUpdated(user, "task-stuck", 0);
        var stuckNext = TaskUpdated(user, "task-stuck", 1);
        failing = stuck.EventId;
        var flowing = Enumerable.Range(2, 3).Select(i => TaskUpdated(user, "task-flowing", i)).ToList();

        await Dispatcher.PublishAsync(stuck);
        await Dispatcher.PublishAsync(stuckNext);
        foreach (var evt in flowing) await Dispatcher.PublishAsync(evt);

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(flowing.All(e => Arrivals(receiver, "/ordered").Contains(e.EventId))), Patience),
            Is.True, "the other key's deliveries all arrive");
        var deliveries = await Dispatcher.DeliveriesAsync(subscription.Id);
        var arrivals = Arrivals(receiver, "/ordered");
        Assert.Multiple(() =>
        {
            Assert.That(arrivals.Where(id => flowing.Any(e => e.EventId == id)), Is.EqualTo(flowing.Select(e => e.EventId)), "in publish order");
            Assert.That(arrivals, Does.Contain(stuck.EventId), "control: the failing key was attempted");
            Assert.That(arrivals, Does.Not.Contain(stuckNext.EventId), "the failing key's next delivery waits");
            Assert.That(deliveries.Single(d => d.EventId == stuck.EventId).Status, Is.AnyOf(DeliveryStatus.Pending, DeliveryStatus.Retrying));
            Assert.That(deliveries.Single(d => d.EventId == stuckNext.EventId).AttemptCount, Is.Zero);
        });
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(s => s.Id == subscription.Id).ExecuteUpdateAsync(u => u.SetProperty(s => s.IsActive, false)));
    }

    [Test]
    public async Task Strict_sends_one_at_a_time_for_the_whole_subscription_in_publish_order()
    {
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            // Slow enough that independent deliveries would overlap.
            await Task.Delay(300);
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/strict", ["task.updated"], ordering: SubscriptionOrdering.Strict);
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["task.updated"]);
        var events = Enumerable.Range(0, 5).Select(i => TaskUpdated(user, $"task-{i}", i)).ToList();

        foreach (var evt in events) await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(5, Patience, "/strict"), Is.True);
        Assert.That(await receiver.WaitForAsync(5, Patience, "/control"), Is.True);
        var strict = receiver.To("/strict");
        Assert.Multiple(() =>
        {
            Assert.That(strict.Select(EventOf), Is.EqualTo(events.Select(e => e.EventId)), "in publish order, although every key differs");
            // Each request arrived after the previous one was answered (300 ms after it arrived).
            for (var i = 1; i < strict.Count; i++)
                Assert.That(strict[i].ArrivedAt - strict[i - 1].ArrivedAt, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(300)), $"request {i + 1}");
            Assert.That(receiver.MaxInFlight, Is.GreaterThan(1), "control: the unordered subscription's deliveries overlapped");
        });
    }

    [Test]
    public async Task A_final_failure_is_skipped_the_next_of_its_key_goes_on_and_a_manual_retry_waits_its_turn_again()
    {
        Guid failing = Guid.Empty, held = Guid.Empty;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            var evt = EventOf(c);
            if (evt == held && c.Request.Path == "/ordered") await release.Task;
            c.Response.StatusCode = evt == failing ? 500 : 200;
        });
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await (await api.PostJsonAsync("/api/webhooks",
            $$"""{"url": "{{receiver.Url}}/ordered", "event_types": ["task.updated"], "retry_count": 0, "ordering": "per_key"}""")).JsonAsync();
        var id = created.Id();
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["task.updated"], retryCount: 0);
        var first = TaskUpdated(user, "task-c", 0);
        var second = TaskUpdated(user, "task-c", 1);
        failing = first.EventId;

        await Dispatcher.PublishAsync(first);
        await Dispatcher.PublishAsync(second);

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Arrivals(receiver, "/ordered").Contains(second.EventId)), Patience), Is.True,
            "the next delivery of the key goes on after the final failure");
        var list = await (await api.GetAsync($"/api/webhooks/{id}/deliveries")).JsonAsync();
        var byEvent = list["data"]!.AsArray().ToDictionary(d => d!["event_id"]!.GetValue<Guid>());
        Assert.Multiple(() =>
        {
            Assert.That(Arrivals(receiver, "/ordered"), Is.EqualTo(new[] { first.EventId, second.EventId }));
            Assert.That(byEvent[first.EventId]!["status"]!.GetValue<string>(), Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(byEvent[first.EventId]!["ordering_key"]!.GetValue<string>(), Is.EqualTo("task_id:task-c"));
            Assert.That(byEvent[second.EventId]!["ordering_key"]!.GetValue<string>(), Is.EqualTo("task_id:task-c"));
        });

        // A manual retry makes the failed one unfinished again; it is held by the receiver, and a
        // later event of its key waits behind it.
        held = first.EventId;
        failing = Guid.Empty;
        var firstDelivery = byEvent[first.EventId]!["id"]!.GetValue<Guid>();
        Assert.That((await api.PostAsync($"/api/webhooks/{id}/deliveries/{firstDelivery}/retry", null)).StatusCode,
            Is.EqualTo(System.Net.HttpStatusCode.Accepted));
        Assert.That(await receiver.WaitForAsync(3, Patience, "/ordered"), Is.True, "the retried delivery is attempted (and held)");
        var third = TaskUpdated(user, "task-c", 2);
        await Dispatcher.PublishAsync(third);
        await WaitPastControlAsync(receiver, "/control", third.EventId);
        Assert.That(Arrivals(receiver, "/ordered"), Does.Not.Contain(third.EventId), "waits behind the retried delivery");

        release.SetResult();
        Assert.That(await receiver.WaitForAsync(4, Patience, "/ordered"), Is.True);
        Assert.That(Arrivals(receiver, "/ordered"), Is.EqualTo(new[] { first.EventId, second.EventId, first.EventId, third.EventId }));
    }

    [Test]
    public async Task Turning_per_key_off_releases_the_waiting_deliveries_at_once()
    {
        Guid held = Guid.Empty;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            if (EventOf(c) == held && c.Request.Path == "/ordered") await release.Task;
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var id = (await (await api.PostJsonAsync("/api/webhooks",
            $$"""{"url": "{{receiver.Url}}/ordered", "event_types": ["task.updated"], "timeout_seconds": 60, "ordering": "per_key"}""")).JsonAsync()).Id();
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["task.updated"]);
        var first = TaskUpdated(user, "task-d", 0);
        var second = TaskUpdated(user, "task-d", 1);
        held = first.EventId;

        try
        {
            await Dispatcher.PublishAsync(first);
            Assert.That(await receiver.WaitForAsync(1, Patience, "/ordered"), Is.True, "the first is in flight (held)");
            await Dispatcher.PublishAsync(second);
            await WaitPastControlAsync(receiver, "/control", second.EventId);
            Assert.That(Arrivals(receiver, "/ordered"), Does.Not.Contain(second.EventId), "control: it waits for the first");

            var patched = await api.PatchJsonAsync($"/api/webhooks/{id}", """{"ordering": "none"}""");
            Assert.That((await patched.JsonAsync())["ordering"]!.GetValue<string>(), Is.EqualTo("none"));

            Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Arrivals(receiver, "/ordered").Contains(second.EventId)), Patience),
                Is.True, "released while the first is still in flight");
            Assert.That((await Dispatcher.DeliveriesAsync(id)).Single(d => d.EventId == first.EventId).Status, Is.EqualTo(DeliveryStatus.Pending),
                "the first is still in flight");
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Test]
    public async Task Turning_per_key_on_orders_the_deliveries_stored_from_then_on()
    {
        Guid held = Guid.Empty;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            if (EventOf(c) == held && c.Request.Path == "/ordered") await release.Task;
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var id = (await (await api.PostJsonAsync("/api/webhooks",
            $$"""{"url": "{{receiver.Url}}/ordered", "event_types": ["task.updated"], "timeout_seconds": 60}""")).JsonAsync()).Id();
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["task.updated"]);
        var before = TaskUpdated(user, "task-e", 0);
        var second = TaskUpdated(user, "task-e", 1);
        var third = TaskUpdated(user, "task-e", 2);

        try
        {
            held = before.EventId;
            await Dispatcher.PublishAsync(before);
            Assert.That(await receiver.WaitForAsync(1, Patience, "/ordered"), Is.True, "stored unordered, in flight (held)");
            Assert.That((await api.PatchJsonAsync($"/api/webhooks/{id}", """{"ordering": "per_key"}""")).IsSuccessStatusCode, Is.True);

            // Stored from now on: ordered among themselves, not behind the one stored before.
            held = second.EventId;
            await Dispatcher.PublishAsync(second);
            await Dispatcher.PublishAsync(third);
            Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(Arrivals(receiver, "/ordered").Contains(second.EventId)), Patience), Is.True,
                "not held back by the delivery stored before ordering was on");
            await WaitPastControlAsync(receiver, "/control", third.EventId);
            Assert.That(Arrivals(receiver, "/ordered"), Does.Not.Contain(third.EventId), "the third waits for the second");
            var deliveries = await Dispatcher.DeliveriesAsync(id);
            Assert.That(deliveries.Single(d => d.EventId == before.EventId).OrderingKey, Is.Null);
        }
        finally
        {
            release.TrySetResult();
        }
        Assert.That(await receiver.WaitForAsync(3, Patience, "/ordered"), Is.True);
        Assert.That(Arrivals(receiver, "/ordered")[^1], Is.EqualTo(third.EventId));
    }
}
