using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Retries held by RabbitMQ. Gaps are measured at the receiver; each must be at least its delay
/// (never early) and at most <see cref="Slack"/> beyond it, wide enough for a busy 2-core machine.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class RetryTests
{
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(3);

    [Test]
    public async Task A_receiver_that_always_fails_gets_four_attempts_2_4_and_8_seconds_apart_then_the_delivery_fails()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(4, TimeSpan.FromSeconds(60)), Is.True, "four attempts within 60 s");
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, TimeSpan.FromSeconds(10)), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(18)); // a fifth attempt would come 16 s after the fourth
        var arrivals = receiver.Requests.Select(r => r.ArrivedAt).ToList();
        Assert.That(arrivals, Has.Count.EqualTo(4));
        var expected = new[] { 2, 4, 8 };
        for (var i = 0; i < 3; i++)
        {
            var gap = arrivals[i + 1] - arrivals[i];
            Assert.That(gap, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(expected[i])).And.LessThanOrEqualTo(TimeSpan.FromSeconds(expected[i]) + Slack),
                $"gap before attempt {i + 2}");
        }

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
    public async Task With_retry_count_zero_there_is_exactly_one_attempt()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 0);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(2) + Slack + Slack);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(delivery.Attempts, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task A_receiver_that_fails_twice_then_answers_200_succeeds_on_the_third_attempt()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(2, 502);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(45)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscription.Id));
        Assert.Multiple(() =>
        {
            Assert.That(delivery.AttemptCount, Is.EqualTo(3));
            Assert.That(delivery.Attempts.Select(a => a.StatusCode), Is.EqualTo(new int?[] { 502, 502, 200 }));
            Assert.That(delivery.ResponseStatusCode, Is.EqualTo(200));
            Assert.That(delivery.ErrorMessage, Is.Null);
            Assert.That(stored.SuccessfulDeliveries, Is.EqualTo(1));
            Assert.That(stored.FailedDeliveries, Is.EqualTo(0));
        });
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

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True);
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

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, TimeSpan.FromSeconds(30)), Is.True);
        var attempt = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single().Attempts.Single();
        Assert.That(attempt.Outcome, Is.EqualTo(AttemptOutcome.Timeout));
        Assert.That(attempt.DurationMs, Is.InRange(900, 2000));
    }

    [Test]
    public async Task A_redirect_is_not_followed_and_counts_as_a_failed_attempt()
    {
        await using var elsewhere = await TestReceiver.AnsweringAsync(200);
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = 302;
            c.Response.Headers.Location = elsewhere.Url + "/moved";
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 0);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, TimeSpan.FromSeconds(30)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Single().StatusCode, Is.EqualTo(302));
            Assert.That(delivery.Attempts.Single().Outcome, Is.EqualTo(AttemptOutcome.Redirect));
            Assert.That(elsewhere.Requests, Is.Empty, "the redirect target is never contacted");
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

        Assert.That(await receiver.WaitForAsync(2, TimeSpan.FromSeconds(40)), Is.True);
        var gap = receiver.Requests[1].ArrivedAt - receiver.Requests[0].ArrivedAt;
        // 5 s asked for, rounded up to the 8 s delay queue; the schedule alone would wait 2 s.
        Assert.That(gap, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(8)).And.LessThanOrEqualTo(TimeSpan.FromSeconds(8) + Slack));
    }

    private static IEnumerable<TestCaseData> HostileAnswers()
    {
        yield return new TestCaseData(200, "", "ok\0done").SetName("A body with a NUL character is recorded");
        yield return new TestCaseData(200, "", new string('a', 4095) + "😀 and more").SetName("A body cut inside a surrogate pair is recorded");
        yield return new TestCaseData(301, "location", "https://sso.example.com/?" + new string('q', 3000)).SetName("A 2 KB+ Location is recorded");
        yield return new TestCaseData(500, "reason", new string('r', 2000)).SetName("A 2 KB reason phrase is recorded");
    }

    [TestCaseSource(nameof(HostileAnswers))]
    public async Task Receiver_answers_that_do_not_fit_a_column_are_still_recorded(int status, string where, string text)
    {
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = status;
            if (where == "location") c.Response.Headers.Location = text;
            else if (where == "reason") c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseFeature>()!.ReasonPhrase = text;
            else await c.Response.WriteAsync(text);
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 0);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        var expected = status == 200 ? DeliveryStatus.Success : DeliveryStatus.Failed;
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, expected, TimeSpan.FromSeconds(30)), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Single().StatusCode, Is.EqualTo(status));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
            Assert.That(delivery.ErrorMessage?.Length ?? 0, Is.LessThanOrEqualTo(1024));
        });
    }

    [Test]
    public async Task Gone_stops_retrying_and_disables_the_subscription()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(410);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, TimeSpan.FromSeconds(30)), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(2) + Slack);
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscription.Id));
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
            Assert.That(stored.IsActive, Is.False);
        });
    }
}
