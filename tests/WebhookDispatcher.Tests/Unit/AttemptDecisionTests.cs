using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Tests.Unit;

public sealed class AttemptDecisionTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    private static WebhookResponse Answer(int status, TimeSpan? retryAfter = null) =>
        new(status is >= 200 and < 300 ? AttemptOutcome.Success : AttemptOutcome.HttpStatus, status, null, null, TimeSpan.FromMilliseconds(5), retryAfter);

    private static WebhookResponse Failure(string outcome) => new(outcome, null, null, "failed", TimeSpan.FromSeconds(10), null);

    [TestCase(200)]
    [TestCase(204)]
    [TestCase(299)]
    public void Any_2xx_succeeds(int status)
    {
        var d = AttemptDecision.Decide(1, 4, Answer(status), Now);
        Assert.That((d.Status, d.NextRetryAt, d.IsFinal), Is.EqualTo((DeliveryStatus.Success, (DateTimeOffset?)null, true)));
    }

    [TestCase(302)]
    [TestCase(400)]
    [TestCase(500)]
    [TestCase(503)]
    public void Other_answers_are_retried_after_the_schedule_while_attempts_are_left(int status)
    {
        var d = AttemptDecision.Decide(2, 4, Answer(status), Now);
        Assert.That((d.Status, d.NextRetryAt, d.IsFinal), Is.EqualTo((DeliveryStatus.Retrying, (DateTimeOffset?)(Now + TimeSpan.FromSeconds(4)), false)));
    }

    [TestCase(AttemptOutcome.Timeout)]
    [TestCase(AttemptOutcome.ConnectionRefused)]
    [TestCase(AttemptOutcome.DnsFailure)]
    [TestCase(AttemptOutcome.BlockedAddress)]
    public void Network_failures_are_retried_like_error_answers(string outcome) =>
        Assert.That(AttemptDecision.Decide(1, 2, Failure(outcome), Now).NextRetryAt, Is.EqualTo(Now + TimeSpan.FromSeconds(2)));

    [Test]
    public void The_last_attempt_failing_fails_the_delivery()
    {
        var d = AttemptDecision.Decide(4, 4, Answer(500), Now);
        Assert.That((d.Status, d.NextRetryAt, d.DisableSubscription), Is.EqualTo((DeliveryStatus.Failed, (DateTimeOffset?)null, false)));
    }

    [Test]
    public void Gone_fails_at_once_and_disables_the_subscription()
    {
        var d = AttemptDecision.Decide(1, 4, Answer(410), Now);
        Assert.That((d.Status, d.DisableSubscription), Is.EqualTo((DeliveryStatus.Failed, true)));
    }

    [Test]
    public void Retry_After_on_429_lengthens_the_wait_to_a_delay_level() =>
        Assert.That(AttemptDecision.Decide(1, 4, Answer(429, TimeSpan.FromSeconds(5)), Now).NextRetryAt, Is.EqualTo(Now + TimeSpan.FromSeconds(8)));

    [TestCase(6, 2)]
    [TestCase(7, 4)]
    [TestCase(8, 8)]
    public void A_manual_retry_round_waits_2_4_8_seconds_counted_from_its_first_attempt(int attempt, int seconds)
    {
        // Five attempts failed, then a manual retry gave attempts 6 to 9.
        var d = AttemptDecision.Decide(attempt, 9, Answer(500), Now, roundFirstAttempt: 6);
        Assert.That((d.Status, d.NextRetryAt), Is.EqualTo((DeliveryStatus.Retrying, (DateTimeOffset?)(Now + TimeSpan.FromSeconds(seconds)))));
    }

    [Test]
    public void The_first_round_counts_from_attempt_1() =>
        Assert.That(AttemptDecision.Decide(6, 9, Answer(500), Now).NextRetryAt, Is.EqualTo(Now + TimeSpan.FromSeconds(64)));

    [Test]
    public void A_round_start_after_the_attempt_counts_as_the_round_s_first_retry() =>
        Assert.That(AttemptDecision.Decide(3, 9, Answer(500), Now, roundFirstAttempt: 5).NextRetryAt, Is.EqualTo(Now + TimeSpan.FromSeconds(2)));

    [Test]
    public void A_new_round_ends_at_its_own_last_attempt()
    {
        var d = AttemptDecision.Decide(9, 9, Answer(500), Now, roundFirstAttempt: 6);
        Assert.That((d.Status, d.NextRetryAt), Is.EqualTo((DeliveryStatus.Failed, (DateTimeOffset?)null)));
    }

    [Test]
    public void Transient_redeliveries_wait_2_4_8_seconds_then_hourly()
    {
        var intervals = BrokerDelayRedeliveryExtensions.TransientIntervals(20);
        Assert.Multiple(() =>
        {
            Assert.That(intervals, Has.Length.EqualTo(20));
            Assert.That(intervals.Take(3), Is.EqualTo(new[] { 2, 4, 8 }.Select(s => TimeSpan.FromSeconds(s))));
            Assert.That(intervals[10], Is.EqualTo(TimeSpan.FromSeconds(2048)));
            Assert.That(intervals.Skip(11), Has.All.EqualTo(TimeSpan.FromHours(1)));
            Assert.That(intervals.Aggregate(TimeSpan.Zero, (a, b) => a + b), Is.GreaterThan(TimeSpan.FromHours(10)), "rides out a 10-hour outage");
            Assert.That(intervals, Has.All.Matches<TimeSpan>(i => DelayLevels.All.Contains(i)), "each is a delay queue's TTL");
        });
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(11)]
    [TestCase(12)]
    [TestCase(100)]
    public void The_transient_budget_is_as_many_redeliveries_as_configured_each_no_shorter_than_the_one_before(int count)
    {
        var intervals = BrokerDelayRedeliveryExtensions.TransientIntervals(count);
        Assert.Multiple(() =>
        {
            Assert.That(intervals, Has.Length.EqualTo(count), "then the message is parked in _error");
            Assert.That(intervals, Is.Ordered);
            Assert.That(intervals, Has.All.InRange(TimeSpan.FromSeconds(2), TimeSpan.FromHours(1)));
        });
    }

    [Test]
    public void The_default_transient_budget_rides_out_an_outage_of_ten_hours_and_a_little_more()
    {
        var budget = new DeliveryOptions().TransientRedeliveries;
        var total = BrokerDelayRedeliveryExtensions.TransientIntervals(budget).Aggregate(TimeSpan.Zero, (a, b) => a + b);
        Assert.Multiple(() =>
        {
            Assert.That(budget, Is.EqualTo(20));
            // 2 + 4 + … + 2048 s, then nine hours: the 21st failure comes 36,494 s after the first.
            Assert.That(total, Is.EqualTo(TimeSpan.FromSeconds(4094 + 9 * 3600)));
        });
    }
}
