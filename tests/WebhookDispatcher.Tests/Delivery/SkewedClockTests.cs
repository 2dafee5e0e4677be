using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A dispatcher whose clock is off (a <see cref="TimeProvider"/> ahead or behind) keeps the retry
/// schedule and makes no second POST: every due time, lease and hold is the database's clock.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class SkewedClockTests
{
    private sealed class Skewed(TimeSpan by) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + by;
    }

    [TestCase(45.0)]
    [TestCase(-2.0)]
    public async Task A_dispatcher_whose_clock_is_off_retries_2_then_4_seconds_later_and_posts_each_attempt_once(double skewSeconds)
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        }, clock: new Skewed(TimeSpan.FromSeconds(skewSeconds)));
        await using var receiver = await TestReceiver.FailingFirstAsync(2, 503);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);

        await dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(90)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var posts = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(posts, Has.Count.EqualTo(3), "503, 503, 200: one POST per attempt");
            Assert.That(delivery.Attempts.Select(a => a.AttemptNumber), Is.EqualTo(new[] { 1, 2, 3 }));
            // At least the delay, and before the next level: a skew of 45 s (or a due time on the
            // process's clock 2 s behind) would show as a retry far later or a claim refused as early.
            Assert.That(posts[1].ArrivedAt - posts[0].ArrivedAt, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(2)).And.LessThan(DelayLevels.All[1]));
            Assert.That(posts[2].ArrivedAt - posts[1].ArrivedAt, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(4)).And.LessThan(DelayLevels.All[2]));
            Assert.That(delivery.Attempts.Max(a => a.AttemptedAt) - delivery.CreatedAt, Is.LessThan(TimeSpan.FromSeconds(30)),
                "stored times are on the database's clock, not 45 s off");
        });
    }
}
