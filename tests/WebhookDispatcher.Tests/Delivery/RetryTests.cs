using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Outcomes of attempts and when retries stop. Gaps and timeouts on the clock are in
/// <see cref="RetryTimingTests"/>. Each "no further attempt" is checked once a control
/// subscription of the same event had its retry: a retry of the tested one would have come by then.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class RetryTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>How much later than its control a delivery of the same event may be: their noise differs by far less.</summary>
    private static readonly TimeSpan ControlMargin = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Waits until the control's attempt number <paramref name="controlAttempt"/> arrived, then as long
    /// again as the tested delivery's first attempt came after the control's first, plus the margin.
    /// </summary>
    private static async Task WaitPastControlAsync(TestReceiver receiver, string tested, string control, int controlAttempt)
    {
        Assert.That(await receiver.WaitForAsync(controlAttempt, Patience, control), Is.True, $"control: attempt {controlAttempt} arrived");
        Assert.That(receiver.To(tested), Is.Not.Empty);
        var lag = receiver.To(tested)[0].ArrivedAt - receiver.To(control)[0].ArrivedAt;
        await receiver.WaitUntilAsync(receiver.To(control)[controlAttempt - 1].ArrivedAt + (lag > TimeSpan.Zero ? lag : TimeSpan.Zero) + ControlMargin);
    }

    [Test]
    public async Task With_retry_count_zero_there_is_exactly_one_attempt()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/tested", ["email.received"], retryCount: 0);
        // Control: one retry allowed; it comes 2 s after the first attempt.
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"], retryCount: 1);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        await WaitPastControlAsync(receiver, "/tested", "/control", 2);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.To("/tested"), Has.Count.EqualTo(1));
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

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
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

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Single().StatusCode, Is.EqualTo(302));
            Assert.That(delivery.Attempts.Single().Outcome, Is.EqualTo(AttemptOutcome.Redirect));
            // The attempt is recorded once its answer is in, so a followed redirect would have reached elsewhere already.
            Assert.That(elsewhere.Requests, Is.Empty, "the redirect target is never contacted");
        });
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
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, expected, Patience), Is.True);
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
        // Control: the same event for a subscription whose receiver answers 500 once; its retry
        // comes when a retry of the gone one would have.
        await using var receiver = await TestReceiver.PerPathAsync((path, n, c) =>
        {
            c.Response.StatusCode = path == "/gone" ? 410 : n == 1 ? 500 : 200;
            return Task.CompletedTask;
        });
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/gone", ["email.received"], retryCount: 3);
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"], retryCount: 3);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Failed, Patience), Is.True);
        await WaitPastControlAsync(receiver, "/gone", "/control", 2);
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscription.Id));
        Assert.Multiple(() =>
        {
            Assert.That(receiver.To("/gone"), Has.Count.EqualTo(1));
            Assert.That(stored.IsActive, Is.False);
        });
    }
}
