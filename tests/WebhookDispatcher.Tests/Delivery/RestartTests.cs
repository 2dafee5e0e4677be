using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

[NonParallelizable]
public sealed class RestartTests
{
    [Test]
    public async Task A_delivery_waiting_between_retries_survives_a_dispatcher_restart()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(2, 500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(2, TimeSpan.FromSeconds(30)), Is.True);

        // Attempt 2 failed: attempt 3 waits 4 s in the broker. Stop the dispatcher for longer than that.
        await Dispatcher.RestartAsync(downtime: TimeSpan.FromSeconds(6));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(3));
            Assert.That(delivery.Attempts.Select(a => a.StatusCode), Is.EqualTo(new int?[] { 500, 500, 200 }));
        });
    }
}
