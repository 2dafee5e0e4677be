using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

[Parallelizable(ParallelScope.All)]
public sealed class ReconcilerTests
{
    private static async Task<WebhookDelivery> StoreDeliveryAsync(Guid subscriptionId, int attemptCount, int maxAttempts, string status,
        DateTimeOffset nextRetryAt)
    {
        var delivery = new WebhookDelivery
        {
            Id = Guid.NewGuid(),
            SubscriptionId = subscriptionId,
            EventId = Guid.NewGuid(),
            EventType = "email.received",
            Payload = """{"id":"lost"}""",
            Status = status,
            AttemptCount = attemptCount,
            MaxAttempts = maxAttempts,
            CreatedAt = DateTimeOffset.UtcNow.AddMinutes(-30),
            NextRetryAt = nextRetryAt,
        };
        await Dispatcher.QueryAsync(async db =>
        {
            db.Deliveries.Add(delivery);
            return await db.SaveChangesAsync();
        });
        return delivery;
    }

    [Test]
    public async Task A_delivery_whose_message_was_lost_is_republished_and_attempted()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"]);
        // As if the process died between the fan-out's commit and its publish.
        var delivery = await StoreDeliveryAsync(subscription.Id, 0, 4, DeliveryStatus.Pending, DateTimeOffset.UtcNow.AddMinutes(-10));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(receiver.Requests[0].Headers["x-webhook-delivery"], Is.EqualTo(delivery.Id.ToString()));
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Status == DeliveryStatus.Success, TimeSpan.FromSeconds(10)), Is.True);
    }

    [Test]
    public async Task A_delivery_whose_last_attempt_never_finished_becomes_failed_without_another_attempt()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"], retryCount: 1);
        // Attempt 2 of 2 was claimed, then the process was killed: the lease ran out long ago.
        await StoreDeliveryAsync(subscription.Id, 2, 2, DeliveryStatus.Retrying, DateTimeOffset.UtcNow.AddMinutes(-10));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var stored = await Dispatcher.QueryAsync(db => Task.FromResult(db.Subscriptions.Single(s => s.Id == subscription.Id)));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(stored.FailedDeliveries, Is.EqualTo(1));
            Assert.That(receiver.Requests, Is.Empty);
        });
    }

    [Test]
    public async Task A_delivery_that_is_not_overdue_is_left_to_the_broker()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"]);
        await StoreDeliveryAsync(subscription.Id, 1, 4, DeliveryStatus.Retrying, DateTimeOffset.UtcNow.AddSeconds(30));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.That(receiver.Requests, Is.Empty);
    }
}
