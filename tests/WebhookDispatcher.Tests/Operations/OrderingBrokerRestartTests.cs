using MassTransit;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Delivery;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// Per-key order (decision 0014) through a RabbitMQ restart, on a deployment of the test's own:
/// the head of a key waits for its retry in a broker delay queue while the broker restarts, and
/// the next delivery of its key waits for it. Not parallel: every other test loses the broker too.
/// </summary>
[NonParallelizable]
public sealed class OrderingBrokerRestartTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    [Test]
    public async Task Per_key_order_holds_through_a_broker_restart_while_the_heads_retry_waits_in_the_broker()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        var first = Guid.Empty;
        // The head's retry waits 32 s in the broker, through the restart (as BrokerRestartTests' does).
        await using var receiver = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            var failed = attempt == 1 && OrderingTests.EventOf(c) == first;
            c.Response.StatusCode = failed ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
            if (failed) c.Response.Headers.RetryAfter = "32";
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await deployment.SubscribeAsync(user, receiver.Url);
        await deployment.ExecuteAsync($"UPDATE webhook_subscriptions SET ordering = 'per_key' WHERE id = '{subscription}'");
        var occurred = new DateTimeOffset(2026, 12, 7, 8, 0, 0, TimeSpan.Zero);
        var events = Enumerable.Range(0, 3)
            .Select(i => Events.EmailReceived(user) with { EmailId = "em-ordered", OccurredAt = occurred.AddSeconds(i) }).ToList();
        first = events[0].EventId;

        foreach (var evt in events) await deployment.Dispatcher!.PublishAsync(evt);
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the head's first attempt (503)");
        Assert.That(await Dispatcher.EventuallyAsync(async () => (await deployment.DeliveriesAsync(subscription)) is { Count: 3 } d
            && d.Single(x => x.EventId == first).Status == DeliveryStatus.Retrying, Patience), Is.True, "all stored, the head's retry handed to the broker");
        try
        {
            await Servers.StopBrokerAsync();
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
        finally
        {
            await Servers.StartBrokerAsync();
        }

        Assert.That(await receiver.WaitForAsync(4, Patience), Is.True, "the retry that waited through the restart is made, and the others follow");
        var deliveries = await deployment.DeliveriesAsync(subscription);
        // Every dispatcher of the run reconnected before the next test.
        var busesBack = await Dispatcher.EventuallyAsync(() => Task.FromResult(new[] { Dispatcher.Services }
            .Concat(IsolatedDispatcher.Running.Select(i => i.Services))
            .All(s => s.GetRequiredService<IBusControl>().CheckHealth().Status == BusHealthStatus.Healthy)), Patience);
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests.Select(OrderingTests.EventOf), Is.EqualTo(new[] { first, first, events[1].EventId, events[2].EventId }),
                "nothing of the key overtook the head while its retry waited in the broker");
            Assert.That(deliveries.Select(d => d.OrderingKey).Distinct(), Is.EqualTo(new[] { "email_id:em-ordered" }));
            Assert.That(busesBack, Is.True, "every dispatcher of the run reconnected its bus");
        });
    }
}
