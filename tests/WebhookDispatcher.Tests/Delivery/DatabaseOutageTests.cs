using System.Text.Json.Nodes;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// PostgreSQL stopped under the shared dispatcher. What fails for a reason of our own is kept and
/// tried again: inside the engine a claim (every 2 s) or a record (with backoff) waits in memory;
/// a fan-out is redelivered by the broker's delay queues, 2, 4, 8 … s apart
/// (<c>BrokerDelayRedeliveryExtensions.TransientIntervals</c>). Receiver retries are new messages,
/// so they leave that transient budget whole. Not parallel: no other test may need the database
/// meanwhile. PostgreSQL is started again whatever happens, and the shared dispatcher must
/// recover by itself (no restart, no pool reset); the tests after these use it as usual.
/// </summary>
[NonParallelizable]
public sealed class DatabaseOutageTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [TearDown]
    public Task StartPostgresAgainAsync() => PostgresServer.StartAsync();

    [Test]
    public async Task A_delivery_waiting_for_its_retry_while_PostgreSQL_is_down_for_longer_than_the_wait_is_attempted_once_it_is_back_with_no_attempt_lost()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(3, 500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        // Attempts 1 to 3 fail, 2 and 4 s apart; attempt 4 then waits 8 s in the broker.
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(subscription.Id)).SingleOrDefault() is { Status: DeliveryStatus.Retrying, AttemptCount: 3, Attempts.Count: 3 },
            Patience), Is.True);
        var deliveryId = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Id;
        var third = receiver.Requests[2].ArrivedAt;
        // Two receiver retries went before it, and the message that carries the third one is new:
        // MassTransit's redelivery count (the transient budget) starts from nothing.
        var retry = await WaitForMessageAsync("webhook-delivery-delay-8s", deliveryId.ToString());
        Assert.That(retry["properties"]!["headers"]?["MT-Redelivery-Count"], Is.Null, retry.ToJsonString());

        TimeSpan back;
        await using (await PostgresServer.OutageAsync())
        {
            Assert.That(receiver.Now - third, Is.LessThan(TimeSpan.FromSeconds(8)), "PostgreSQL stopped before the retry was due");
            // Down until 4 s past the due time: the retry comes back from the broker and its claim
            // fails twice or more meanwhile.
            var until = third + TimeSpan.FromSeconds(8 + 4);
            if (until > receiver.Now) await Task.Delay(until - receiver.Now);
            back = receiver.Now;
        }

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(requests, Has.Count.EqualTo(4));
            Assert.That(requests[^1].ArrivedAt, Is.GreaterThanOrEqualTo(back), "attempt 4 came once the database was back");
            // Claims are tried again every 2 s: the delivery waited in memory (the test's reconciler
            // runs once an hour), not for a re-publish.
            Assert.That(requests[^1].ArrivedAt - back, Is.LessThan(TimeSpan.FromSeconds(10)), "and soon after");
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)),
                Is.EqualTo(new (int, int?)[] { (1, 500), (2, 500), (3, 500), (4, 200) }));
            Assert.That(delivery.AttemptCount, Is.EqualTo(4));
            Assert.That(requests.Select(r => r.Headers["x-webhook-delivery"]), Has.All.EqualTo(deliveryId.ToString()));
        });
    }

    [Test]
    public async Task An_attempt_that_ends_while_PostgreSQL_is_down_is_recorded_once_it_is_back_and_its_retry_follows()
    {
        var gate = new SemaphoreSlim(0);
        await using var receiver = await TestReceiver.StartAsync(async (n, c) =>
        {
            if (n == 1) await gate.WaitAsync(c.RequestAborted);
            c.Response.StatusCode = n == 1 ? 503 : 200;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1, timeoutSeconds: 60);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(receiver.InFlight == 1), Patience), Is.True);

        await using (await PostgresServer.OutageAsync())
        {
            gate.Release();
            // The 503 is known only in memory: its record fails, 0.25, 0.5, 1, 2 … s apart.
            await Task.Delay(TimeSpan.FromSeconds(6));
        }

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 503), (2, 200) }));
            Assert.That(delivery.AttemptCount, Is.EqualTo(2));
            Assert.That(requests, Has.Count.EqualTo(2), "one POST per attempt: the first was not made again");
        });
    }

    [Test]
    public async Task An_event_published_while_PostgreSQL_is_down_is_redelivered_by_the_broker_2_4_and_8_seconds_later_and_delivered_once_it_is_back()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var evt = Events.EmailReceived(user);

        await using (await PostgresServer.OutageAsync())
        {
            await Dispatcher.PublishAsync(evt);
            // Its fan-out fails each time: the broker holds the event 2 s (too short to look in
            // reliably), then 4 s as its second redelivery, then 8 s as its third.
            var second = await WaitForMessageAsync("webhook-fan-out-delay-4s", evt.EventId.ToString());
            var third = await WaitForMessageAsync("webhook-fan-out-delay-8s", evt.EventId.ToString());
            Assert.Multiple(() =>
            {
                Assert.That(second["properties"]!["headers"]!["MT-Redelivery-Count"]!.GetValue<int>(), Is.EqualTo(2));
                Assert.That(third["properties"]!["headers"]!["MT-Redelivery-Count"]!.GetValue<int>(), Is.EqualTo(3));
            });
        }

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(delivery.EventId, Is.EqualTo(evt.EventId));
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 200) }));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
            Assert.That(JsonNode.Parse(receiver.Requests[0].Body)!["id"]!.GetValue<Guid>(), Is.EqualTo(evt.EventId));
        });
    }

    /// <summary>Looks into <paramref name="queue"/> (leaving its messages there) until a message whose body contains <paramref name="text"/> is in it.</summary>
    private static async Task<JsonNode> WaitForMessageAsync(string queue, string text)
    {
        JsonNode? found = null;
        var seen = await Dispatcher.EventuallyAsync(async () =>
        {
            found = (await RabbitManagement.PeekAsync(queue)).FirstOrDefault(m => m["payload"]?.GetValue<string>().Contains(text) == true);
            return found is not null;
        }, TimeSpan.FromSeconds(30));
        Assert.That(seen, Is.True, $"a message with {text} in {queue}");
        return found!;
    }

    [Test]
    public async Task An_answer_kept_in_memory_through_an_outage_longer_than_the_lease_is_recorded_not_made_again()
    {
        // A dispatcher of its own with the production reconciler (every second here, 5 s grace,
        // 30 s settle), so a give-back could race the recorder the moment PostgreSQL returns. Its
        // heartbeat lapses in the outage too: its own pass must still leave its claim alone.
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Reconciler:IntervalSeconds"] = "1",
        });
        var gate = new SemaphoreSlim(0);
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            await gate.WaitAsync(c.RequestAborted);
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], timeoutSeconds: 10);
        await dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        var claimedAt = receiver.Now;

        await using (await PostgresServer.OutageAsync())
        {
            gate.Release(10); // the answer arrives while the database is away
            // Down past the claim's lease (timeout 10 s + 30 s), a grace (5 s then 10 s) and more.
            var until = claimedAt + TimeSpan.FromSeconds(10 + 30 + 10 + 5);
            if (until > receiver.Now) await Task.Delay(until - receiver.Now);
        }

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "the answer kept through the outage was stored; nothing POSTed twice");
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 200) }));
            Assert.That(delivery.AttemptCount, Is.EqualTo(1));
        });
    }
}
