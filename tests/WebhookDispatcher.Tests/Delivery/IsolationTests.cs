using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Endpoint isolation: each subscription's attempts wait in a lane of their own, so a slow or
/// capped endpoint only ever uses its own share. Receivers here hold requests behind a gate the
/// test opens, so nothing depends on timing.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class IsolationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>A receiver that answers 200 once the test opens the gate.</summary>
    private static async Task<(TestReceiver Receiver, SemaphoreSlim Gate)> GatedReceiverAsync()
    {
        var gate = new SemaphoreSlim(0);
        var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            await gate.WaitAsync(c.RequestAborted);
            c.Response.StatusCode = 200;
        });
        return (receiver, gate);
    }

    private static Task<int> CountAsync(Guid subscriptionId, Func<WebhookDelivery, bool> predicate) =>
        Dispatcher.QueryAsync(async db => (await db.Deliveries.AsNoTracking().Where(d => d.SubscriptionId == subscriptionId).ToListAsync()).Count(predicate));

    [Test]
    public async Task A_fast_subscriptions_deliveries_all_arrive_while_a_slow_ones_are_still_in_flight()
    {
        var (slow, gate) = await GatedReceiverAsync();
        await using var _ = slow;
        await using var fast = await TestReceiver.AnsweringAsync(200);
        var slowUser = Events.NewUser();
        var fastUser = Events.NewUser();
        var slowSubscription = await Dispatcher.SubscribeAsync(slowUser, slow.Url, ["email.received"], timeoutSeconds: 60);
        await Dispatcher.SubscribeAsync(fastUser, fast.Url, ["email.received"]);

        // 40 for the slow one: more than its 32 slots. Interleaved with 100 for the fast one.
        for (var i = 0; i < 100; i++)
        {
            await Dispatcher.PublishAsync(Events.EmailReceived(fastUser));
            if (i < 40) await Dispatcher.PublishAsync(Events.EmailReceived(slowUser));
        }

        Assert.That(await fast.WaitForAsync(100, Patience), Is.True, "every fast delivery arrived");
        Assert.Multiple(async () =>
        {
            Assert.That(slow.InFlight, Is.GreaterThan(0), "while the slow receiver still holds requests");
            Assert.That(slow.Requests, Has.Count.LessThanOrEqualTo(32), "the slow one never had more than its cap");
            Assert.That(await CountAsync(slowSubscription.Id, d => d.Status == DeliveryStatus.Success), Is.Zero);
        });

        gate.Release(1000);
        Assert.That(await slow.WaitForAsync(40, Patience), Is.True, "every slow delivery still arrives");
        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(slowSubscription.Id, d => d.Status == DeliveryStatus.Success) == 40,
            Patience), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(slow.MaxInFlight, Is.EqualTo(32), "the default cap, reached and never passed");
            Assert.That(await CountAsync(slowSubscription.Id, d => d.AttemptCount == 1), Is.EqualTo(40), "waiting spent no attempt");
            Assert.That(fast.Requests.Select(r => r.Headers["x-webhook-delivery"]).Distinct().Count(), Is.EqualTo(100));
        });
    }

    [Test]
    public async Task A_subscription_over_its_concurrency_cap_has_no_more_than_the_cap_in_flight_and_waiting_spends_no_attempt()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:MaxInFlightPerSubscription"] = "3",
        });
        var (receiver, gate) = await GatedReceiverAsync();
        await using var _ = receiver;
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], timeoutSeconds: 60);

        for (var i = 0; i < 10; i++) await dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(3, Patience), Is.True);
        // Positive control: all ten exist; the seven beyond the cap wait with no attempt made.
        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(subscription.Id, _ => true) == 10, Patience), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(receiver.InFlight, Is.EqualTo(3));
            Assert.That(await CountAsync(subscription.Id, d => d.AttemptCount == 0 && d.Status == DeliveryStatus.Pending), Is.EqualTo(7));
        });

        gate.Release(1000);
        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(subscription.Id, d => d.Status == DeliveryStatus.Success) == 10,
            Patience), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(receiver.MaxInFlight, Is.EqualTo(3));
            Assert.That(receiver.Requests, Has.Count.EqualTo(10));
            Assert.That(await CountAsync(subscription.Id, d => d.AttemptCount == 1), Is.EqualTo(10));
        });
    }

    [Test]
    public async Task A_rate_limited_subscription_is_never_sent_more_than_its_rate_and_waiting_spends_no_attempt()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"]);
        var patched = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", """{"rate_limit_per_second": 4}""");
        Assert.That((int)patched.StatusCode, Is.EqualTo(200));
        Assert.That((await patched.JsonAsync())["rate_limit_per_second"]!.GetValue<int>(), Is.EqualTo(4));

        for (var i = 0; i < 14; i++) await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(created.Id(), d => d.Status == DeliveryStatus.Success) == 14,
            Patience), Is.True);
        var starts = (await Dispatcher.DeliveriesAsync(created.Id())).SelectMany(d => d.Attempts).Select(a => a.AttemptedAt).Order().ToList();
        Assert.That(starts, Has.Count.EqualTo(14), "one attempt each: waiting for the rate spent none");
        // At most 4 starts in any one second: the 5th start after any start is at least 1 s later.
        // The stored times are the process's moved onto the database's clock, whose estimate may
        // improve by a few milliseconds between two record batches (DatabaseClock.Resolution).
        var translation = 2 * DatabaseClock.Resolution;
        for (var i = 0; i + 4 < starts.Count; i++)
            Assert.That(starts[i + 4] - starts[i], Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1) - translation), $"starts {i} to {i + 4}");
        Assert.That(starts[^1] - starts[0], Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(3)), "14 at 4/s take at least 3 s");
    }

    [Test]
    public async Task Deliveries_beyond_a_lanes_bound_wait_in_the_backlog_and_all_arrive_once()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:MaxInFlightPerSubscription"] = "2",
            ["Delivery:MaxQueuedPerSubscription"] = "5",
        });
        var (receiver, gate) = await GatedReceiverAsync();
        await using var _ = receiver;
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], timeoutSeconds: 60);

        for (var i = 0; i < 30; i++) await dispatcher.PublishAsync(Events.EmailReceived(user));

        // Positive control: the deliveries beyond the lane's 2 in flight + 5 waiting are in the
        // backlog (due whenever there is room: next_retry_at null).
        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(subscription.Id, d => d.NextRetryAt == null && d.Status == DeliveryStatus.Pending) >= 20,
            Patience), Is.True);
        Assert.That(receiver.Requests, Has.Count.EqualTo(2));

        gate.Release(1000);
        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(subscription.Id, d => d.Status == DeliveryStatus.Success) == 30,
            Patience), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(receiver.Requests.Select(r => r.Headers["x-webhook-delivery"]).Distinct().Count(), Is.EqualTo(30));
            Assert.That(receiver.Requests, Has.Count.EqualTo(30), "no delivery twice");
            Assert.That(receiver.MaxInFlight, Is.EqualTo(2));
            Assert.That(await CountAsync(subscription.Id, d => d.AttemptCount == 1), Is.EqualTo(30));
        });
    }

    [Test]
    public async Task A_thousand_deliveries_to_a_keep_alive_receiver_share_a_few_connections()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);

        await Task.WhenAll(Enumerable.Range(0, 1000).Select(_ => Dispatcher.PublishAsync(Events.EmailReceived(user))));

        Assert.That(await receiver.WaitForAsync(1000, TimeSpan.FromSeconds(120)), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(receiver.MaxInFlight, Is.LessThanOrEqualTo(32), "never more requests at once than the subscription's concurrency cap");
            // Reused, not one per delivery: the cap's worth, plus the few connects that were under way
            // when a pooled connection came back (the pool keeps those too; claims at insert start the
            // next attempt sooner, which makes that race likelier).
            Assert.That(receiver.Connections, Is.LessThanOrEqualTo(2 * 32), "a few connections, shared");
        });
    }

    [Test]
    public async Task A_receiver_that_closes_idle_connections_costs_no_attempt_and_no_failure()
    {
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = 200;
            return Task.CompletedTask;
        }, keepAliveTimeout: TimeSpan.FromSeconds(1));
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);

        for (var i = 1; i <= 4; i++)
        {
            await Dispatcher.PublishAsync(Events.EmailReceived(user));
            Assert.That(await receiver.WaitForAsync(i, Patience), Is.True);
            await Task.Delay(TimeSpan.FromSeconds(3.5)); // the receiver closes the idle connection meanwhile (Kestrel checks once a second)
        }

        Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(subscription.Id, d => d.Status == DeliveryStatus.Success) == 4,
            Patience), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(receiver.Connections, Is.EqualTo(4), "control: each delivery came on a new connection, the old one was closed");
            Assert.That(await CountAsync(subscription.Id, d => d.AttemptCount == 1), Is.EqualTo(4));
        });
    }
}
