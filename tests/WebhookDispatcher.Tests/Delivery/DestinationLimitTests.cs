using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Delivery:MaxInFlightPerHost: one user's subscriptions to one host share a concurrency limit,
/// so many of them cannot add up to a flood, while another user's deliveries to the same host go on.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class DestinationLimitTests
{
    [Test]
    public async Task Many_subscriptions_of_one_user_to_one_host_never_exceed_its_limit_while_another_users_delivery_to_it_arrives()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:MaxInFlightPerHost"] = "3",
        });
        var held = new HeldRequests();
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            if (c.Request.Path.StartsWithSegments("/flood")) await held.HoldAsync(c.RequestAborted);
            c.Response.StatusCode = StatusCodes.Status200OK;
        });
        var tenant = Events.NewUser();
        var other = Events.NewUser();
        var flood = new List<Guid>();
        for (var i = 0; i < 6; i++)
            flood.Add((await Dispatcher.SubscribeAsync(tenant, $"{receiver.Url}/flood/{i}", ["email.received"])).Id);
        var neighbour = await Dispatcher.SubscribeAsync(other, $"{receiver.Url}/neighbour", ["email.received"]);

        for (var e = 0; e < 6; e++)
            await dispatcher.PublishAsync(Events.EmailReceived(tenant));
        // The limit is reached (a positive signal, not a sleep) ...
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(held.Now >= 3), TimeSpan.FromSeconds(60)), Is.True,
            "three of the tenant's POSTs are held by the receiver");
        // ... and another user's delivery to the same host is not held by it.
        await dispatcher.PublishAsync(Events.EmailReceived(other));
        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(60), "/neighbour"), Is.True, "the other user's delivery arrived");
        Assert.That(held.Now, Is.EqualTo(3), "still three of the tenant's in flight, no more");

        held.ReleaseAll();
        Assert.That(await Dispatcher.EventuallyAsync(async () => await Dispatcher.QueryAsync(db =>
            db.Deliveries.CountAsync(d => flood.Contains(d.SubscriptionId) && d.Status == DeliveryStatus.Success)) == 36, TimeSpan.FromSeconds(90)),
            Is.True, "every delivery of the tenant arrived");
        Assert.Multiple(() =>
        {
            Assert.That(held.Most, Is.EqualTo(3), "never more than Delivery:MaxInFlightPerHost at once");
            Assert.That(receiver.To("/neighbour"), Has.Count.EqualTo(1));
        });
        _ = neighbour;
    }
}
