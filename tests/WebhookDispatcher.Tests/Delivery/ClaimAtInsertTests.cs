using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Claim at insert (<see cref="InsertClaims"/>): the fan-out claims the new deliveries of lanes that
/// could start them at once in the statement that makes them, and the scheduler starts them
/// within every cap, giving back what no longer fits.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class ClaimAtInsertTests
{
    [TestCase(true)]
    [TestCase(false)]
    public async Task A_known_idle_subscriptions_next_events_are_claimed_in_the_statement_that_makes_them_unless_the_setting_is_off(bool claimAtInsert)
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:ClaimAtInsert"] = claimAtInsert ? "true" : "false",
        });
        await using var receiver = await TestReceiver.AnsweringAsync(StatusCodes.Status200OK);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        // The first event makes the lane and teaches it the subscription's settings.
        for (var i = 1; i <= 6; i++)
        {
            await dispatcher.PublishAsync(Events.EmailReceived(user));
            Assert.That(await receiver.WaitForAsync(i, TimeSpan.FromSeconds(60)), Is.True, $"event {i} arrived");
        }
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(subscription.Id)).Count(d => d.Status == DeliveryStatus.Success) == 6, TimeSpan.FromSeconds(60)), Is.True);

        var deliveries = (await Dispatcher.DeliveriesAsync(subscription.Id)).OrderBy(d => d.Id).ToList();
        // A claim at insert takes the inserting statement's now(); the scheduler's claim is a later statement.
        var claimedAtInsert = deliveries.Count(d => d.FirstAttemptAt == d.CreatedAt);
        Assert.Multiple(() =>
        {
            Assert.That(deliveries.All(d => d.AttemptCount == 1 && d.Attempts.Count == 1), Is.True, "one attempt each");
            Assert.That(deliveries[0].FirstAttemptAt, Is.GreaterThan(deliveries[0].CreatedAt), "the first waited for the scheduler's claim");
            if (claimAtInsert) Assert.That(claimedAtInsert, Is.GreaterThanOrEqualTo(3), "most of the next five were claimed at insert");
            else Assert.That(claimedAtInsert, Is.Zero, "with the setting off, none is claimed at insert");
        });
    }

    [Test]
    public async Task Deliveries_claimed_at_insert_beyond_their_lanes_room_are_given_back_and_delivered_within_the_cap()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:MaxInFlightPerSubscription"] = "2",
        });
        var held = new HeldRequests();
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            await held.HoldAsync(c.RequestAborted);
            c.Response.StatusCode = StatusCodes.Status200OK;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);

        // As if room had been granted for five while the lane's cap is two (the room was used
        // meanwhile): the statement claims five, the scheduler may start only two.
        var events = Enumerable.Range(0, 5).Select(_ => Events.EmailReceived(user))
            .Select(e => new FanOutEvent(e.EventId, user, "email.received", $$"""{"event_id":"{{e.EventId}}"}""")).ToList();
        var services = dispatcher.Services;
        var stored = await services.GetRequiredService<FanOutStore>().FanOutAndClaimAsync(events, new ClaimGrant([subscription.Id], [5]),
            services.GetRequiredService<DispatcherIdentity>().Id, DateTimeOffset.UtcNow, CancellationToken.None);
        Assert.That(stored.Claimed, Has.Count.EqualTo(5), "control: five claimed at insert");
        services.GetRequiredService<InsertClaims>().Return(stored.Claimed);
        services.GetRequiredService<DeliveryScheduler>().Enqueue(stored.Work);

        // Positive signals: two POSTs held, and three deliveries given back (no attempt, not in flight).
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(held.Now == 2), TimeSpan.FromSeconds(60)), Is.True, "two POSTs held");
        Assert.That(await Dispatcher.EventuallyAsync(async () => await Dispatcher.QueryAsync(db => db.Deliveries
            .CountAsync(d => d.SubscriptionId == subscription.Id && d.AttemptCount == 0 && !d.InFlight)) == 3, TimeSpan.FromSeconds(60)), Is.True,
            "the three that did not fit were given back");
        Assert.That(held.Now, Is.EqualTo(2), "still two in flight, no more");

        held.ReleaseAll();
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(subscription.Id)).Count(d => d.Status == DeliveryStatus.Success) == 5, TimeSpan.FromSeconds(60)), Is.True,
            "all five arrived");
        var deliveries = await Dispatcher.DeliveriesAsync(subscription.Id);
        Assert.Multiple(() =>
        {
            Assert.That(held.Most, Is.EqualTo(2), "never more than the cap at once");
            Assert.That(receiver.Requests, Has.Count.EqualTo(5), "one POST each, none twice");
            Assert.That(deliveries.Select(d => d.Attempts.Single().AttemptNumber), Is.All.EqualTo(1), "each delivered on its first attempt");
        });
    }
}
