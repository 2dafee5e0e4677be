using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Two replicas of the dispatcher on the same broker virtual host and database, as a deployment
/// scaled to two would run. Not parallel: the second replica takes a share of every endpoint's
/// messages while it runs.
/// </summary>
[NonParallelizable]
public sealed class ReplicaTests
{
    [Test]
    public async Task Two_replicas_deliver_every_event_to_every_subscription_with_no_duplicate_post()
    {
        await using var second = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        }, sharedBroker: true);
        // Each path fails its first request, so retries travel through the broker to either replica.
        var firstSeen = new System.Collections.Concurrent.ConcurrentDictionary<string, byte>();
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = firstSeen.TryAdd(c.Request.Path, 0) ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
            return Task.CompletedTask;
        });
        const int users = 20, eventsPerUser = 10;
        var subscriptions = new List<Guid>();
        var owners = new List<string>();
        for (var i = 0; i < users; i++)
        {
            var user = Events.NewUser();
            owners.Add(user);
            subscriptions.Add((await Dispatcher.SubscribeAsync(user, $"{receiver.Url}/{user}", ["email.received"])).Id);
        }

        // Published through both replicas' buses; either replica may fan out any event.
        var publishes = new List<Task>();
        for (var e = 0; e < eventsPerUser; e++)
            foreach (var user in owners)
                publishes.Add(e % 2 == 0 ? Dispatcher.PublishAsync(Events.EmailReceived(user)) : second.PublishAsync(Events.EmailReceived(user)));
        await Task.WhenAll(publishes);

        const int expected = users * eventsPerUser;
        Assert.That(await Dispatcher.EventuallyAsync(async () => await SucceededAsync(subscriptions) == expected, TimeSpan.FromSeconds(90)), Is.True);
        var deliveries = await Dispatcher.QueryAsync(db => db.Deliveries.AsNoTracking().Include(d => d.Attempts)
            .Where(d => subscriptions.Contains(d.SubscriptionId)).ToListAsync());
        Assert.Multiple(() =>
        {
            Assert.That(deliveries, Has.Count.EqualTo(expected), "one delivery per event and subscription");
            Assert.That(receiver.Requests, Has.Count.EqualTo(deliveries.Sum(d => d.Attempts.Count)), "one POST per recorded attempt");
            Assert.That(receiver.Requests, Has.Count.EqualTo(expected + users), "each path's first POST failed once, nothing else twice");
            Assert.That(receiver.Requests.Where(r => r.Headers.ContainsKey("x-webhook-delivery")).GroupBy(r => r.Headers["x-webhook-delivery"])
                .Max(g => g.Count()), Is.LessThanOrEqualTo(2));
            Assert.That(deliveries.SelectMany(d => d.Attempts).GroupBy(a => (a.DeliveryId, a.AttemptNumber)).Max(g => g.Count()), Is.EqualTo(1));
        });
    }

    private static Task<int> SucceededAsync(List<Guid> subscriptions) =>
        Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d => subscriptions.Contains(d.SubscriptionId) && d.Status == DeliveryStatus.Success));
}
