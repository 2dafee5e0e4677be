using Microsoft.AspNetCore.Http;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// What operators do in the RabbitMQ management console, done through its HTTP API exactly as
/// the console does it, against a deployment of each test's own (<see cref="PrivateDeployment"/>:
/// its own database and virtual host, reconciler every second, the default grace). Each shows the
/// promise of docs/operations.md: nothing is lost, and the schedule is back within seconds —
/// on time where the dispatcher can tell, within the reconciler's grace plus one interval where
/// only the database still knows. The tests of this class run one at a time (beside other
/// classes): each measures a wall-clock bound, and five deployments with their reconcilers at once
/// on 2 cores stretched those bounds.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class ConsoleActionTests
{
    /// <summary>Beyond a retry's delay, what a busy 2-core machine may add (as in the retry tests).</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(3);

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(45);

    private static readonly string Delay8 = RabbitMqTopology.DelayExchangeName(DeliveryQueues.Delivery, TimeSpan.FromSeconds(8));

    /// <summary>The first attempt of each delivery answers 503 with <c>Retry-After: 8</c> (its retry waits in the 8 s delay queue), the next 200.</summary>
    private static Task<TestReceiver> RetryIn8SecondsThenOkAsync() => TestReceiver.PerDeliveryAsync((attempt, c) =>
    {
        c.Response.StatusCode = attempt == 1 ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
        if (attempt == 1) c.Response.Headers.RetryAfter = "8";
        return Task.CompletedTask;
    });

    private static TimeSpan Gap(IReadOnlyList<ReceivedRequest> requests, int attempt) => requests[attempt - 1].ArrivedAt - requests[attempt - 2].ArrivedAt;

    private static void Report(string action, string measured) => TestContext.Progress.WriteLine($"[console] {action}: {measured}");

    [Test]
    public async Task Purging_a_delay_queue_while_a_retry_waits_in_it_loses_nothing_and_the_retry_comes_within_the_reconcilers_bound_of_its_due_time()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        await using var receiver = await RetryIn8SecondsThenOkAsync();
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);

        await deployment.Dispatcher!.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        Assert.That(await deployment.QueueHoldsAsync(Delay8, 1, TimeSpan.FromSeconds(5)), Is.True, "control: the retry waits in the delay queue");

        await RabbitManagement.PurgeAsync(Delay8, deployment.VirtualHost);

        Assert.That((await RabbitManagement.CountAsync(Delay8, deployment.VirtualHost))?.Messages, Is.EqualTo(0), "the purge removed it");
        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "the purged retry is still made");
        var gap = Gap(receiver.Requests, 2);
        Report("purge webhook-delivery-delay-8s", $"retry came {(gap - TimeSpan.FromSeconds(8)).TotalSeconds:F1} s after its due time");
        var delivery = (await deployment.DeliveriesAsync(subscription)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(gap, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(8)), "never early");
            Assert.That(gap, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(8) + PrivateDeployment.ReconcilerBound + Slack), "back within the reconciler's bound");
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Success));
            Assert.That(delivery.Attempts, Has.Count.EqualTo(2));
        });
    }

    [Test]
    public async Task Deleting_a_delay_queue_while_a_retry_waits_loses_nothing_and_the_next_retries_sent_to_it_arrive_on_schedule()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        await using var receiver = await RetryIn8SecondsThenOkAsync();
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);
        await deployment.Dispatcher!.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        Assert.That(await deployment.QueueHoldsAsync(Delay8, 1, TimeSpan.FromSeconds(5)), Is.True, "control: the first retry waits in the delay queue");

        await RabbitManagement.DeleteQueueAsync(Delay8, deployment.VirtualHost);
        Assert.That(await RabbitManagement.CountAsync(Delay8, deployment.VirtualHost), Is.Null, "the queue is gone, with the retry in it");
        // The next retry goes to the same delay exchange, which no queue is bound to any more.
        await deployment.Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(4, Patience), Is.True, "both deliveries retried");
        var requests = receiver.ByDelivery.Values.OrderBy(r => r[0].ArrivedAt).ToList();
        var (lost, next) = (Gap(requests[0], 2), Gap(requests[1], 2));
        Report("delete webhook-delivery-delay-8s", $"the retry deleted with it came {(lost - TimeSpan.FromSeconds(8)).TotalSeconds:F1} s late, " +
                                                   $"the next retry {(next - TimeSpan.FromSeconds(8)).TotalSeconds:F1} s late");
        var arguments = await RabbitManagement.QueueArgumentsAsync(Delay8, deployment.VirtualHost);
        var deliveries = await deployment.DeliveriesAsync(subscription);
        Assert.Multiple(() =>
        {
            Assert.That(next, Is.InRange(TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(8) + Slack), "the next retry keeps its schedule");
            Assert.That(lost, Is.InRange(TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(8) + PrivateDeployment.ReconcilerBound + Slack),
                "the retry deleted with the queue comes back through the reconciler");
            Assert.That(arguments?["x-message-ttl"]?.GetValue<long>(), Is.EqualTo(8000), "the delay queue is declared again, with its TTL");
            Assert.That(arguments?["x-queue-type"]?.GetValue<string>(), Is.EqualTo("quorum"));
            Assert.That(deliveries.Select(d => (d.Status, d.Attempts.Count)), Is.EqualTo(new[] { (DeliveryStatus.Success, 2), (DeliveryStatus.Success, 2) }));
        });
    }

    [Test]
    public async Task Purging_webhook_delivery_while_the_workers_are_down_loses_nothing()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        // First attempts fail; their retries (2 s) come back to webhook-delivery while no worker consumes it.
        await using var receiver = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            c.Response.StatusCode = attempt == 1 ? StatusCodes.Status500InternalServerError : StatusCodes.Status200OK;
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);
        const int events = 5;
        for (var i = 0; i < events; i++) await deployment.Dispatcher!.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await deployment.DeliveriesAsync(subscription)).Count(d => d.Status == DeliveryStatus.Retrying) == events, Patience), Is.True);
        await deployment.StopAsync();
        Assert.That(await deployment.QueueHoldsAsync(DeliveryQueues.Delivery, events, TimeSpan.FromSeconds(15)), Is.True,
            "control: the retries wait in webhook-delivery");

        await RabbitManagement.PurgeAsync(DeliveryQueues.Delivery, deployment.VirtualHost);
        var purgedAt = DateTimeOffset.UtcNow;
        Assert.That((await RabbitManagement.CountAsync(DeliveryQueues.Delivery, deployment.VirtualHost))?.Messages, Is.EqualTo(0), "purged");
        await deployment.StartDispatcherAsync();

        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await deployment.DeliveriesAsync(subscription)).Count(d => d.Status == DeliveryStatus.Success) == events, Patience), Is.True,
            "every purged retry is made");
        var deliveries = await deployment.DeliveriesAsync(subscription);
        var due = deliveries.Max(d => d.Attempts[0].AttemptedAt) + TimeSpan.FromSeconds(2);
        var lastRetry = deliveries.Max(d => d.Attempts[1].AttemptedAt);
        Report("purge webhook-delivery (workers down)", $"retries made {(lastRetry - purgedAt).TotalSeconds:F1} s after the purge, " +
                                                       $"{(lastRetry - due).TotalSeconds:F1} s after they were due");
        Assert.Multiple(() =>
        {
            Assert.That(deliveries.Select(d => d.Attempts.Count), Has.All.EqualTo(2), "one retry each, none twice");
            Assert.That(receiver.Requests, Has.Count.EqualTo(2 * events));
            Assert.That(lastRetry - due, Is.LessThanOrEqualTo(PrivateDeployment.ReconcilerBound + Slack + (purgedAt - due)),
                "made within the reconciler's bound once the workers are back");
        });
    }

    [Test]
    public async Task Deleting_webhook_delivery_loses_nothing_the_queue_comes_back_with_its_consumer_and_retries_resume_within_seconds()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        // Attempt 1 fails (retry in 2 s), attempt 2 fails (retry in 4 s), attempt 3 succeeds.
        await using var receiver = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            c.Response.StatusCode = attempt <= 2 ? StatusCodes.Status500InternalServerError : StatusCodes.Status200OK;
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);
        const int events = 3;
        Assert.That((await RabbitManagement.CountAsync(DeliveryQueues.Delivery, deployment.VirtualHost))?.Consumers, Is.EqualTo(1), "control: consumed");
        for (var i = 0; i < events; i++) await deployment.Dispatcher!.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(events, Patience), Is.True);

        await RabbitManagement.DeleteQueueAsync(DeliveryQueues.Delivery, deployment.VirtualHost);
        var deletedAt = DateTimeOffset.UtcNow;
        var back = await Dispatcher.EventuallyAsync(async () =>
            (await RabbitManagement.CountAsync(DeliveryQueues.Delivery, deployment.VirtualHost))?.Consumers > 0, TimeSpan.FromSeconds(30));
        var backAfter = DateTimeOffset.UtcNow - deletedAt;

        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await deployment.DeliveriesAsync(subscription)).Count(d => d.Status == DeliveryStatus.Success) == events, Patience), Is.True,
            "every delivery completes");
        var gaps = receiver.ByDelivery.Values.Select(r => (Second: Gap(r, 2), Third: Gap(r, 3))).ToList();
        Report("delete webhook-delivery", $"queue and consumer back after {backAfter.TotalSeconds:F1} s; retries came up to " +
                                          $"{gaps.Max(g => g.Second - TimeSpan.FromSeconds(2)).TotalSeconds:F1} s and " +
                                          $"{gaps.Max(g => g.Third - TimeSpan.FromSeconds(4)).TotalSeconds:F1} s late");
        var deliveries = await deployment.DeliveriesAsync(subscription);
        Assert.Multiple(() =>
        {
            Assert.That(back, Is.True, "MassTransit declared the queue again and consumes it");
            Assert.That(backAfter, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(deliveries.Select(d => d.Attempts.Count), Has.All.EqualTo(3), "three attempts each, none twice");
            Assert.That(receiver.Requests, Has.Count.EqualTo(3 * events));
            Assert.That(gaps.Select(g => g.Second), Has.All.InRange(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2) + PrivateDeployment.ReconcilerBound + Slack),
                "retries that met the missing queue come back through the reconciler at the latest");
            Assert.That(gaps.Select(g => g.Third), Has.All.InRange(TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(4) + Slack),
                "the next retries keep their schedule");
        });
    }

    [Test]
    public async Task An_event_parked_in_the_fan_out_error_queue_is_delivered_after_the_consoles_move_messages_back()
    {
        // One redelivery (2 s), then _error: an event whose deliveries cannot be stored is parked fast.
        await using var deployment = await PrivateDeployment.StartAsync(new Dictionary<string, string?> { ["Delivery:TransientRedeliveries"] = "1" });
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);
        const string errorQueue = DeliveryQueues.FanOut + "_error";
        // The database refuses new deliveries for a while, longer than the redeliveries last.
        await deployment.ExecuteAsync("""
            CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'deliveries refused for the test'; END $$;
            CREATE TRIGGER refuse_deliveries BEFORE INSERT ON webhook_deliveries FOR EACH ROW EXECUTE FUNCTION refuse_deliveries();
            """);
        var evt = Events.EmailReceived(user);
        await deployment.Dispatcher!.PublishAsync(evt);
        Assert.That(await deployment.QueueHoldsAsync(errorQueue, 1, Patience), Is.True, "control: the event is parked in webhook-fan-out_error");
        var parked = (await RabbitManagement.PeekAsync(errorQueue, virtualHost: deployment.VirtualHost)).Single()["properties"]!["headers"]!;
        Assert.That(parked["MT-Fault-Message"]?.GetValue<string>(), Does.Contain("deliveries refused for the test"), "parked for the database's refusal");
        Assert.That(await deployment.DeliveriesAsync(subscription), Is.Empty);
        await deployment.ExecuteAsync("DROP TRIGGER refuse_deliveries ON webhook_deliveries");

        await RabbitManagement.MoveMessagesAsync(errorQueue, DeliveryQueues.FanOut, deployment.VirtualHost);
        var movedAt = DateTimeOffset.UtcNow;

        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the moved event is delivered");
        Report("move webhook-fan-out_error back", $"delivered {(DateTimeOffset.UtcNow - movedAt).TotalSeconds:F1} s after the move");
        Assert.Multiple(async () =>
        {
            Assert.That(System.Text.Json.Nodes.JsonNode.Parse(receiver.Requests[0].Body)!["id"]!.GetValue<Guid>(), Is.EqualTo(evt.EventId));
            Assert.That((await deployment.DeliveriesAsync(subscription)).Single().Status, Is.EqualTo(DeliveryStatus.Success));
            Assert.That((await RabbitManagement.CountAsync(errorQueue, deployment.VirtualHost))?.Messages, Is.EqualTo(0), "moved out of _error");
            Assert.That(await Dispatcher.EventuallyAsync(async () =>
                    !await RabbitManagement.ShovelExistsAsync(RabbitManagement.MoveShovelName(errorQueue), deployment.VirtualHost), TimeSpan.FromSeconds(10)),
                Is.True, "the console's shovel removed itself once done");
        });
    }
}
