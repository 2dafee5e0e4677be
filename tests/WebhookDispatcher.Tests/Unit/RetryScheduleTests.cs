using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Tests.Unit;

public sealed class RetryScheduleTests
{
    [TestCase(1, 2)]
    [TestCase(2, 4)]
    [TestCase(3, 8)]
    [TestCase(10, 1024)]
    [TestCase(11, 2048)]
    [TestCase(12, 3600)]
    [TestCase(40, 3600)]
    public void Retry_n_waits_two_to_the_n_seconds_capped_at_an_hour(int failedAttempt, int seconds) =>
        Assert.That(RetrySchedule.DelayAfter(failedAttempt), Is.EqualTo(TimeSpan.FromSeconds(seconds)));

    [Test]
    public void A_longer_Retry_After_lengthens_the_wait_rounded_up_to_a_delay_level() =>
        Assert.That(RetrySchedule.DelayAfter(1, TimeSpan.FromSeconds(30)), Is.EqualTo(TimeSpan.FromSeconds(32)));

    [Test]
    public void A_shorter_Retry_After_never_shortens_the_schedule() =>
        Assert.That(RetrySchedule.DelayAfter(3, TimeSpan.FromSeconds(1)), Is.EqualTo(TimeSpan.FromSeconds(8)));

    [Test]
    public void Retry_After_is_clamped_to_an_hour() =>
        Assert.That(RetrySchedule.DelayAfter(1, TimeSpan.FromDays(2)), Is.EqualTo(TimeSpan.FromHours(1)));

    [Test]
    public void Attempt_numbers_start_at_one() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => RetrySchedule.DelayAfter(0));
}
