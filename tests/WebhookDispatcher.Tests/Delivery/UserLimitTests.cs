using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Delivery:MaxInFlightPerUser: one user's subscriptions, on every host together, share a
/// concurrency limit, so a tenant with many slow endpoints cannot take a process's whole budget
/// (Delivery:MaxInFlight) from the others.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class UserLimitTests
{
    [Test]
    public async Task A_users_slow_endpoints_on_two_hosts_never_exceed_its_limit_and_leave_room_for_another_user()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:MaxInFlight"] = "5",
            ["Delivery:MaxInFlightPerUser"] = "4",
        });
        var held = new HeldRequests();
        RequestDelegate hold = async c =>
        {
            if (c.Request.Path.StartsWithSegments("/slow")) await held.HoldAsync(c.RequestAborted);
            c.Response.StatusCode = StatusCodes.Status200OK;
        };
        await using var first = await TestReceiver.StartAsync((_, c) => hold(c));
        await using var second = await TestReceiver.StartAsync((_, c) => hold(c));
        var tenant = Events.NewUser();
        var other = Events.NewUser();
        var slow = new List<Guid>();
        // Timeouts of 60 s: without the limit the tenant's attempts would hold all 5 places of
        // the process that long, and the other user's delivery would wait for them.
        for (var i = 0; i < 3; i++)
        {
            slow.Add((await Dispatcher.SubscribeAsync(tenant, $"{first.Url}/slow/{i}", ["email.received"], timeoutSeconds: 60)).Id);
            slow.Add((await Dispatcher.SubscribeAsync(tenant, $"{second.Url}/slow/{i}", ["email.received"], timeoutSeconds: 60)).Id);
        }
        await Dispatcher.SubscribeAsync(other, $"{first.Url}/other", ["email.received"]);

        for (var e = 0; e < 3; e++)
            await dispatcher.PublishAsync(Events.EmailReceived(tenant));
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(held.Now >= 4), TimeSpan.FromSeconds(60)), Is.True,
            "four of the tenant's POSTs are held by its receivers");
        await dispatcher.PublishAsync(Events.EmailReceived(other));
        Assert.That(await first.WaitForAsync(1, TimeSpan.FromSeconds(30), "/other"), Is.True, "the other user's delivery took the place left");
        Assert.That(held.Now, Is.EqualTo(4), "still four of the tenant's in flight, no more");

        held.ReleaseAll();
        Assert.That(await Dispatcher.EventuallyAsync(async () => await Dispatcher.QueryAsync(db =>
            db.Deliveries.CountAsync(d => slow.Contains(d.SubscriptionId) && d.Status == DeliveryStatus.Success)) == 18, TimeSpan.FromSeconds(90)),
            Is.True, "every delivery of the tenant arrived");
        Assert.That(held.Most, Is.EqualTo(4), "never more than Delivery:MaxInFlightPerUser at once");
    }
}
