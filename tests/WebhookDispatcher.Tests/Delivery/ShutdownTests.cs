using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A dispatcher host stopped while a receiver holds its POST open (README: a claimed attempt runs
/// to its deadline and is recorded while the host stops). Each instance has its own virtual host
/// and production settings; the receiver answers only once the host has begun to stop.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class ShutdownTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static readonly Dictionary<string, string?> Settings = new() { ["Delivery:AllowPrivateNetworks"] = "true" };

    /// <summary>
    /// Publishes one event for a subscription whose receiver holds the first POST until the
    /// dispatcher has begun to stop, then answers <paramref name="firstAnswer"/> (later POSTs: 200).
    /// Returns once the host has stopped, with the receiver and the subscription.
    /// </summary>
    private static async Task<(TestReceiver Receiver, Guid Subscription)> StopMidAttemptAsync(IsolatedDispatcher dispatcher, int firstAnswer)
    {
        var gate = new SemaphoreSlim(0);
        var receiver = await TestReceiver.StartAsync(async (n, c) =>
        {
            if (n == 1) await gate.WaitAsync(c.RequestAborted);
            c.Response.StatusCode = n == 1 ? firstAnswer : 200;
            await c.Response.WriteAsync($"answer {c.Response.StatusCode}");
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3, timeoutSeconds: 30);
        await dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the attempt started");

        var stop = Task.Run(dispatcher.StopAsync);
        await dispatcher.Stopping.WaitAsync(Patience);
        // The host has begun to stop; give it time to finish if it would not wait for the attempt.
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.That(stop.IsCompleted, Is.False, "the host is still stopping: it waits for the attempt in flight");
        Assert.That(receiver.InFlight, Is.EqualTo(1), "the POST is still open");

        gate.Release();
        await stop.WaitAsync(Patience);
        return (receiver, subscription.Id);
    }

    [Test]
    public async Task A_host_stopped_while_a_receiver_holds_the_POST_waits_for_the_answer_and_records_the_success()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(Settings);

        var (receiver, subscriptionId) = await StopMidAttemptAsync(dispatcher, 200);
        await using var _ = receiver;

        var delivery = (await Dispatcher.DeliveriesAsync(subscriptionId)).Single();
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscriptionId));
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode, a.Outcome)),
                Is.EqualTo(new (int, int?, string)[] { (1, 200, AttemptOutcome.Success) }));
            Assert.That(delivery.Attempts[0].ResponseExcerpt, Is.EqualTo("answer 200"));
            Assert.That(delivery.Attempts[0].DurationMs, Is.GreaterThanOrEqualTo(2000), "held open across the start of the stop");
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Success));
            Assert.That(delivery.AttemptCount, Is.EqualTo(1));
            Assert.That(delivery.CompletedAt, Is.Not.Null);
            Assert.That(delivery.NextRetryAt, Is.Null);
            Assert.That(stored.SuccessfulDeliveries, Is.EqualTo(1));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task A_host_stopped_while_a_receiver_holds_the_POST_records_a_failed_answer_and_hands_the_retry_to_the_broker_for_the_next_instance()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(Settings);

        var (receiver, subscriptionId) = await StopMidAttemptAsync(dispatcher, 503);
        await using var _ = receiver;

        var delivery = (await Dispatcher.DeliveriesAsync(subscriptionId)).Single();
        var attempt = delivery.Attempts.Single();
        Assert.Multiple(() =>
        {
            Assert.That((attempt.AttemptNumber, attempt.StatusCode, attempt.ResponseExcerpt), Is.EqualTo((1, (int?)503, "answer 503")));
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Retrying));
            Assert.That(delivery.AttemptCount, Is.EqualTo(1));
            // Due 2 s after the answer (the attempt's start plus its duration, to the millisecond);
            // the next schedule step would be 4 s.
            var answered = attempt.AttemptedAt.AddMilliseconds(attempt.DurationMs);
            Assert.That(delivery.NextRetryAt, Is.GreaterThanOrEqualTo(answered + TimeSpan.FromSeconds(2) - TimeSpan.FromMilliseconds(1))
                .And.LessThan(answered + TimeSpan.FromSeconds(4)), "due 2 s after the answer");
            Assert.That(delivery.HeldUntil, Is.Null, "not held by the stopped process");
        });
        // The retry left for the broker before the bus stopped: it waits in the delay queue, or
        // (past its 2 s) in the stopped instance's input queue.
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            foreach (var queue in new[] { "webhook-delivery-delay-2s", DeliveryQueues.Delivery })
                if ((await RabbitManagement.PeekAsync(queue, virtualHost: dispatcher.VirtualHost))
                    .Any(m => m["payload"]?.GetValue<string>().Contains(delivery.Id.ToString()) == true))
                    return true;
            return false;
        }, TimeSpan.FromSeconds(10)), Is.True, "the retry message is in the broker");

        // The next instance on the same broker makes the retry.
        await using var successor = await IsolatedDispatcher.StartAsync(Settings, virtualHost: dispatcher.VirtualHost);
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscriptionId, DeliveryStatus.Success, Patience), Is.True);
        delivery = (await Dispatcher.DeliveriesAsync(subscriptionId)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 503), (2, 200) }));
            Assert.That(receiver.Requests, Has.Count.EqualTo(2));
        });
    }
}
