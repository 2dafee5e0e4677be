using MassTransit;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// RabbitMQ restarted under waiting retries (<c>rabbitmqctl stop_app</c> / <c>start_app</c>, as an
/// operator restarts a node), on a deployment of the test's own. Not parallel: every other test
/// loses the broker too. The broker is started again whatever happens, and the test waits until
/// every dispatcher of the run is connected again.
/// </summary>
[NonParallelizable]
public sealed class BrokerRestartTests
{
    /// <summary>"± a few seconds": a reconnecting bus on a busy 2-core machine.</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Test]
    public async Task A_broker_restart_while_retries_wait_loses_nothing_and_the_next_attempts_keep_their_schedule()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        // Its retry waits 32 s in the broker, through the restart: long enough for the workers'
        // consumers to be back whatever MassTransit's reconnect schedule (3 s, then longer).
        await using var waiting = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            c.Response.StatusCode = attempt == 1 ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
            if (attempt == 1) c.Response.Headers.RetryAfter = "32";
            return Task.CompletedTask;
        });
        // Its first attempt ends in a 500 while the broker is down, so its retry (2 s) is handed over during the outage.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var inFlight = await TestReceiver.PerDeliveryAsync(async (attempt, c) =>
        {
            if (attempt == 1) await release.Task;
            c.Response.StatusCode = attempt == 1 ? StatusCodes.Status500InternalServerError : StatusCodes.Status200OK;
        });
        var user = Events.NewUser();
        var waitingSubscription = await deployment.SubscribeAsync(user, waiting.Url);
        var inFlightSubscription = await deployment.SubscribeAsync(user, inFlight.Url, timeoutSeconds: 60);
        var delay32 = RabbitMqTopology.DelayExchangeName(DeliveryQueues.Delivery, TimeSpan.FromSeconds(32));

        await deployment.Dispatcher!.PublishAsync(Events.EmailReceived(user));
        Assert.That(await waiting.WaitForAsync(1, Patience), Is.True);
        Assert.That(await inFlight.WaitForAsync(1, Patience), Is.True);
        Assert.That(await deployment.QueueHoldsAsync(delay32, 1, TimeSpan.FromSeconds(5)), Is.True, "control: a retry waits in the broker");
        TimeSpan released, back;
        try
        {
            await Servers.StopBrokerAsync();
            release.SetResult();
            released = inFlight.Now;
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
        finally
        {
            release.TrySetResult();
            await Servers.StartBrokerAsync();
        }
        back = inFlight.Now;

        Assert.That(await waiting.WaitForAsync(2, Patience), Is.True, "the retry that waited through the restart is made");
        Assert.That(await inFlight.WaitForAsync(2, Patience), Is.True, "the retry handed over during the outage is made");
        var gap = waiting.Requests[1].ArrivedAt - waiting.Requests[0].ArrivedAt;
        // Due 2 s after its failed attempt ended (when released), sent once the broker is back.
        var handedOverLate = inFlight.Requests[1].ArrivedAt - (released + TimeSpan.FromSeconds(2) > back ? released + TimeSpan.FromSeconds(2) : back);
        TestContext.Progress.WriteLine($"[console] restart the broker ({(back - released).TotalSeconds:F1} s away): the waiting retry came " +
                                       $"{(gap - TimeSpan.FromSeconds(32)).TotalSeconds:F1} s late; the retry handed over during the outage came " +
                                       $"{handedOverLate.TotalSeconds:F1} s after the broker was back");
        var busesBack = await Dispatcher.EventuallyAsync(() => Task.FromResult(AllBusesHealthy()), Patience);
        var deliveries = (await deployment.DeliveriesAsync(waitingSubscription)).Concat(await deployment.DeliveriesAsync(inFlightSubscription)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(gap, Is.InRange(TimeSpan.FromSeconds(32), TimeSpan.FromSeconds(32) + Slack), "the waiting retry keeps its schedule");
            // It is sent within seconds of the broker's return, then waits in webhook-delivery until the
            // workers' consumers reconnect, on MassTransit's schedule (3 s, then longer, up to 30 s).
            Assert.That(handedOverLate, Is.LessThanOrEqualTo(PrivateDeployment.ReconcilerBound + Slack),
                "the retry handed over during the outage is made once the broker is back");
            Assert.That(deliveries.Select(d => (d.Status, d.Attempts.Count)), Is.EqualTo(new[] { (DeliveryStatus.Success, 2), (DeliveryStatus.Success, 2) }));
            Assert.That(busesBack, Is.True, "every dispatcher of the run reconnected its bus");
        });
    }

    [Test]
    public async Task After_a_broker_restart_the_receive_endpoints_reconnect_as_soon_as_it_answers_not_on_MassTransits_schedule()
    {
        await using var deployment = await PrivateDeployment.StartAsync();
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await deployment.SubscribeAsync(user, receiver.Url);
        var services = deployment.Dispatcher!.Services;
        var watchdog = services.GetRequiredService<ReceiveEndpointWatchdog>();
        var bus = services.GetRequiredService<IBusControl>();
        var restarts = watchdog.Restarts;
        TimeSpan back;
        try
        {
            await Servers.StopBrokerAsync();
            Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(watchdog.Down.Count >= 2), Patience), Is.True,
                "control: both worker endpoints know the broker is gone");
            // Away long enough for MassTransit's first reconnect (4.5-7.5 s after the loss, +1 s) to
            // fail: its next comes 6.75-11.25 s later.
            await Task.Delay(TimeSpan.FromSeconds(8));
        }
        finally
        {
            await Servers.StartBrokerAsync();
            back = receiver.Now;
        }
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(bus.CheckHealth().Status == BusHealthStatus.Healthy), Patience), Is.True,
            "the endpoints are connected again");
        var ready = receiver.Now - back;
        await deployment.Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "and deliver");
        TestContext.Progress.WriteLine($"[console] broker back: endpoints ready {ready.TotalSeconds:F1} s later ({watchdog.Restarts - restarts} restart(s) by the watch)");
        Assert.Multiple(() =>
        {
            Assert.That(ready, Is.LessThan(Slack), "ready within seconds of the broker's return");
            Assert.That(watchdog.Restarts, Is.GreaterThan(restarts), "restarted by the watch once the broker answered");
        });
    }

    private static bool AllBusesHealthy() =>
        new[] { Dispatcher.Services }.Concat(IsolatedDispatcher.Running.Select(i => i.Services))
            .All(s => s.GetRequiredService<IBusControl>().CheckHealth().Status == BusHealthStatus.Healthy);
}
