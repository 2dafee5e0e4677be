using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Retry gaps and timeouts measured on the clock. Gaps are measured at the receiver, each between
/// two bounds (see <see cref="AssertRetryGap"/>). Not parallel: on a 2-core machine the other
/// tests' work would be measured too.
/// </summary>
[NonParallelizable]
public sealed class RetryTimingTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>How much later than its control a delivery of the same event may be: their noise differs by far less.</summary>
    private static readonly TimeSpan ControlMargin = TimeSpan.FromSeconds(1);

    /// <summary>
    /// A retry <paramref name="delaySeconds"/> (a delay level) after the previous attempt comes no
    /// earlier: the broker's TTL never ends early, and the gap is measured from the previous
    /// request's arrival, before its answer. And it comes before the next level: a retry put in
    /// the wrong, longer delay queue comes at least one level late, while the noise of recording,
    /// the broker and the scheduler on this machine stays far below the gap to the next level
    /// (2 s at the shortest).
    /// </summary>
    private static void AssertRetryGap(TimeSpan gap, int delaySeconds, string what)
    {
        var delay = TimeSpan.FromSeconds(delaySeconds);
        var next = DelayLevels.All.First(l => l > delay);
        Assert.That(gap, Is.GreaterThanOrEqualTo(delay).And.LessThan(next), what);
    }

    [Test]
    public async Task A_receiver_that_always_fails_gets_four_attempts_2_4_and_8_seconds_apart_then_the_delivery_fails()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/tested", ["email.received"], retryCount: 3);
        // Control: the same event for a subscription with one retry more. Its fifth attempt shows
        // when a fifth attempt of the tested one would have come (16 s after the fourth).
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"], retryCount: 4);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(5, Patience, "/control"), Is.True, "control: five attempts");
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        var control = receiver.To("/control");
        Assert.That(receiver.To("/tested"), Has.Count.GreaterThanOrEqualTo(4));
        var lag = receiver.To("/tested")[3].ArrivedAt - control[3].ArrivedAt;
        await receiver.WaitUntilAsync(control[4].ArrivedAt + (lag > TimeSpan.Zero ? lag : TimeSpan.Zero) + ControlMargin);

        var arrivals = receiver.To("/tested").Select(r => r.ArrivedAt).ToList();
        Assert.That(arrivals, Has.Count.EqualTo(4), "no fifth attempt");
        Assert.Multiple(() =>
        {
            AssertRetryGap(arrivals[1] - arrivals[0], 2, "gap before attempt 2");
            AssertRetryGap(arrivals[2] - arrivals[1], 4, "gap before attempt 3");
            AssertRetryGap(arrivals[3] - arrivals[2], 8, "gap before attempt 4");
            AssertRetryGap(control[4].ArrivedAt - control[3].ArrivedAt, 16, "control: gap before attempt 5");
        });

        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscription.Id));
        Assert.Multiple(() =>
        {
            Assert.That(delivery.AttemptCount, Is.EqualTo(4));
            Assert.That(delivery.MaxAttempts, Is.EqualTo(4));
            Assert.That(delivery.ResponseStatusCode, Is.EqualTo(500));
            Assert.That(delivery.ResponseBody, Is.EqualTo("answer 500"));
            Assert.That(delivery.CompletedAt, Is.Not.Null);
            Assert.That(delivery.NextRetryAt, Is.Null);
            Assert.That(delivery.Attempts.Select(a => a.AttemptNumber), Is.EqualTo(new[] { 1, 2, 3, 4 }));
            Assert.That(delivery.Attempts, Has.All.Matches<WebhookDeliveryAttempt>(a => a.StatusCode == 500 && a.Outcome == AttemptOutcome.HttpStatus));
            Assert.That(stored.TotalDeliveries, Is.EqualTo(1));
            Assert.That(stored.FailedDeliveries, Is.EqualTo(1));
            Assert.That(stored.SuccessfulDeliveries, Is.EqualTo(0));
            Assert.That(stored.LastFailureAt, Is.Not.Null);
            Assert.That(stored.IsActive, Is.True);
        });
    }

    [Test]
    public async Task A_manual_retry_starts_a_fresh_round_whose_attempts_wait_2_then_4_seconds()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        // Three attempts a round: the first round's third attempt is number 3, so a schedule that
        // went on counting would wait 8 and 16 s before the new round's second and third attempts.
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 2);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        var deliveryId = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Id;
        Assert.That(receiver.Requests, Has.Count.EqualTo(3));

        using var client = TestTokens.Client(user);
        var retry = await client.PostAsync($"/api/webhooks/{subscription.Id}/deliveries/{deliveryId}/retry", null);

        Assert.That(retry.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Accepted));
        Assert.That(await receiver.WaitForAsync(6, Patience), Is.True, "the new round's three attempts");
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(subscription.Id)).Single() is { Status: DeliveryStatus.Failed, Attempts.Count: 6 }, Patience), Is.True);
        var arrivals = receiver.Requests.Select(r => r.ArrivedAt).ToList();
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            AssertRetryGap(arrivals[4] - arrivals[3], 2, "gap before the new round's second attempt");
            AssertRetryGap(arrivals[5] - arrivals[4], 4, "gap before the new round's third attempt");
            Assert.That(delivery.RoundFirstAttempt, Is.EqualTo(4));
            Assert.That((delivery.AttemptCount, delivery.MaxAttempts), Is.EqualTo((6, 6)));
            Assert.That(delivery.Attempts.Select(a => a.AttemptNumber), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }));
        });
    }

    [Test]
    public async Task A_Retry_After_on_503_lengthens_the_wait()
    {
        await using var receiver = await TestReceiver.StartAsync((n, c) =>
        {
            c.Response.StatusCode = n == 1 ? 503 : 200;
            if (n == 1) c.Response.Headers.RetryAfter = "5";
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True);
        // 5 s asked for, rounded up to the 8 s delay queue; the schedule alone would wait 2 s.
        AssertRetryGap(receiver.Requests[1].ArrivedAt - receiver.Requests[0].ArrivedAt, 8, "gap before attempt 2");
    }

    [Test]
    public async Task A_receiver_slower_than_the_timeout_is_recorded_as_a_timeout_and_retried()
    {
        await using var receiver = await TestReceiver.StartAsync(async (n, c) =>
        {
            if (n == 1) await Task.Delay(TimeSpan.FromSeconds(6));
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1, timeoutSeconds: 1);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        var attempts = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Attempts;
        Assert.Multiple(() =>
        {
            Assert.That(attempts, Has.Count.EqualTo(2));
            Assert.That(attempts[0].Outcome, Is.EqualTo(AttemptOutcome.Timeout));
            Assert.That(attempts[0].StatusCode, Is.Null);
            // The timer may fire a millisecond or so early; the requirement is "within timeout + 1 s".
            Assert.That(attempts[0].DurationMs, Is.InRange(900, 2000), "timeout within timeout + 1 s");
            Assert.That(attempts[1].Outcome, Is.EqualTo(AttemptOutcome.Success));
        });
    }

    [Test]
    public async Task A_body_that_keeps_streaming_past_the_timeout_is_a_timeout()
    {
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = 200;
            await c.Response.StartAsync();
            for (var i = 0; i < 40 && !c.RequestAborted.IsCancellationRequested; i++)
            {
                await c.Response.WriteAsync("x");
                await c.Response.Body.FlushAsync();
                await Task.Delay(100);
            }
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 0, timeoutSeconds: 1);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        var attempt = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Attempts.Single();
        Assert.That(attempt.Outcome, Is.EqualTo(AttemptOutcome.Timeout));
        Assert.That(attempt.DurationMs, Is.InRange(900, 2000));
    }
}
