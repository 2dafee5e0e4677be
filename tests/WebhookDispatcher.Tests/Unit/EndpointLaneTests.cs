using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Tests.Unit;

public sealed class EndpointLaneTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Break = TimeSpan.FromSeconds(30);

    /// <summary>A lane with <paramref name="queued"/> deliveries waiting whose settings are known (one claim made and finished).</summary>
    private static EndpointLane Lane(int queued, int? ratePerSecond = null)
    {
        var lane = new EndpointLane(Guid.NewGuid());
        var first = Guid.NewGuid();
        lane.TryEnqueue(first, T0, int.MaxValue, T0);
        lane.Take(1);
        lane.Started(T0 - TimeSpan.FromMinutes(1), ratePerSecond);
        lane.Finished(first, timedOut: false, T0 - TimeSpan.FromMinutes(1), 5, Break);
        for (var i = 0; i < queued; i++) lane.TryEnqueue(Guid.NewGuid(), T0, int.MaxValue, T0);
        return lane;
    }

    private static void Start(EndpointLane lane, int count, DateTimeOffset at, int? ratePerSecond = null)
    {
        lane.Take(count);
        for (var i = 0; i < count; i++) lane.Started(at, ratePerSecond);
    }

    [Test]
    public void No_more_than_the_cap_starts_while_earlier_attempts_are_in_flight()
    {
        var lane = Lane(queued: 10);
        Assert.That(lane.Startable(T0, cap: 3, replicas: 1), Is.EqualTo(3));
        Start(lane, 3, T0);
        Assert.That(lane.Startable(T0, cap: 3, replicas: 1), Is.Zero);
        lane.Finished(Guid.NewGuid(), timedOut: false, T0, 5, Break);
        Assert.That(lane.Startable(T0, cap: 3, replicas: 1), Is.EqualTo(1));
    }

    [Test]
    public void Nothing_starts_when_nothing_waits() =>
        Assert.That(Lane(queued: 0).Startable(T0, cap: 10, replicas: 1), Is.Zero);

    [Test]
    public void Until_its_settings_are_known_a_lane_starts_one_attempt_to_learn_them()
    {
        var lane = new EndpointLane(Guid.NewGuid());
        for (var i = 0; i < 5; i++) lane.TryEnqueue(Guid.NewGuid(), T0, 100, T0);
        Assert.That(lane.Startable(T0, cap: 10, replicas: 1), Is.EqualTo(1));
        lane.Take(1);
        Assert.That(lane.Startable(T0, cap: 10, replicas: 1), Is.EqualTo(1), "taken but not started yet: still unknown");
        lane.Started(T0, rateLimitPerSecond: null);
        Assert.That(lane.Startable(T0, cap: 10, replicas: 1), Is.EqualTo(4), "known now: the cap applies");
    }

    [Test]
    public void A_rate_limit_allows_that_many_starts_in_any_one_second()
    {
        var lane = Lane(queued: 20, ratePerSecond: 5);
        Start(lane, 5, T0, 5);
        Assert.That(lane.Startable(T0 + TimeSpan.FromMilliseconds(999), cap: 100, replicas: 1), Is.Zero);
        Assert.That(lane.NextWake(T0, replicas: 1), Is.EqualTo(T0 + TimeSpan.FromSeconds(1)));
        Assert.That(lane.Startable(T0 + TimeSpan.FromSeconds(1), cap: 100, replicas: 1), Is.EqualTo(5));
    }

    [Test]
    public void Starts_spread_over_the_second_free_their_permits_one_by_one()
    {
        var lane = Lane(queued: 20, ratePerSecond: 2);
        Start(lane, 1, T0, 2);
        Start(lane, 1, T0 + TimeSpan.FromMilliseconds(400), 2);
        Assert.That(lane.Startable(T0 + TimeSpan.FromMilliseconds(900), 100, 1), Is.Zero);
        Assert.That(lane.Startable(T0 + TimeSpan.FromMilliseconds(1000), 100, 1), Is.EqualTo(1));
        Start(lane, 1, T0 + TimeSpan.FromMilliseconds(1000), 2);
        Assert.That(lane.Startable(T0 + TimeSpan.FromMilliseconds(1399), 100, 1), Is.Zero);
        Assert.That(lane.Startable(T0 + TimeSpan.FromMilliseconds(1400), 100, 1), Is.EqualTo(1));
    }

    [TestCase(100, 1, 100, 1.0)]
    [TestCase(100, 2, 50, 1.0)]
    [TestCase(5, 2, 2, 1.0)]
    [TestCase(1, 2, 1, 2.0)]
    [TestCase(1, 3, 1, 3.0)]
    [TestCase(2, 3, 1, 1.5)]
    public void Each_replica_takes_a_share_of_the_rate_never_more_than_the_rate_overall(int rate, int replicas, int permits, double windowSeconds)
    {
        var (p, window) = EndpointLane.RateWindow(rate, replicas);
        Assert.Multiple(() =>
        {
            Assert.That(p, Is.EqualTo(permits));
            Assert.That(window.TotalSeconds, Is.EqualTo(windowSeconds).Within(1e-9));
            Assert.That(p * replicas / window.TotalSeconds, Is.LessThanOrEqualTo(rate), "all replicas together");
        });
    }

    [Test]
    public void Consecutive_timeouts_open_the_circuit_and_nothing_starts_until_the_break_ends()
    {
        var lane = Lane(queued: 10);
        Start(lane, 5, T0);
        for (var i = 0; i < 4; i++) lane.Finished(Guid.NewGuid(), timedOut: true, T0, 5, Break);
        Assert.That(lane.Circuit, Is.EqualTo(CircuitState.Closed), "four timeouts: still closed");
        lane.Finished(Guid.NewGuid(), timedOut: true, T0, 5, Break);
        Assert.Multiple(() =>
        {
            Assert.That(lane.Circuit, Is.EqualTo(CircuitState.Open));
            Assert.That(lane.Startable(T0 + Break - TimeSpan.FromMilliseconds(1), cap: 10, replicas: 1), Is.Zero);
            Assert.That(lane.NextWake(T0, replicas: 1), Is.EqualTo(T0 + Break));
        });
    }

    [Test]
    public void After_the_break_one_probe_starts_and_an_answer_closes_the_circuit()
    {
        var lane = Lane(queued: 10);
        Start(lane, 5, T0);
        for (var i = 0; i < 5; i++) lane.Finished(Guid.NewGuid(), timedOut: true, T0, 5, Break);

        Assert.That(lane.Startable(T0 + Break, cap: 10, replicas: 1), Is.EqualTo(1));
        Assert.That(lane.Circuit, Is.EqualTo(CircuitState.HalfOpen));
        Start(lane, 1, T0 + Break);
        Assert.That(lane.Startable(T0 + Break, cap: 10, replicas: 1), Is.Zero, "one probe at a time");

        lane.Finished(Guid.NewGuid(), timedOut: false, T0 + Break, 5, Break);
        Assert.Multiple(() =>
        {
            Assert.That(lane.Circuit, Is.EqualTo(CircuitState.Closed));
            Assert.That(lane.Startable(T0 + Break, cap: 10, replicas: 1), Is.EqualTo(4), "all that still waits");
        });
    }

    [Test]
    public void A_probe_that_times_out_opens_the_circuit_again()
    {
        var lane = Lane(queued: 10);
        Start(lane, 5, T0);
        for (var i = 0; i < 5; i++) lane.Finished(Guid.NewGuid(), timedOut: true, T0, 5, Break);
        lane.Startable(T0 + Break, cap: 10, replicas: 1);
        Start(lane, 1, T0 + Break);
        var probeEnd = T0 + Break + TimeSpan.FromSeconds(10);
        lane.Finished(Guid.NewGuid(), timedOut: true, probeEnd, 5, Break);
        Assert.Multiple(() =>
        {
            Assert.That(lane.Circuit, Is.EqualTo(CircuitState.Open));
            Assert.That(lane.OpenUntil, Is.EqualTo(probeEnd + Break));
        });
    }

    [Test]
    public void Answers_other_than_timeouts_never_open_the_circuit()
    {
        var lane = Lane(queued: 30);
        Start(lane, 20, T0);
        for (var i = 0; i < 20; i++) lane.Finished(Guid.NewGuid(), timedOut: i % 2 == 0, T0, 5, Break);
        Assert.That(lane.Circuit, Is.EqualTo(CircuitState.Closed));
    }

    [Test]
    public void A_delivery_already_waiting_is_not_queued_twice()
    {
        var lane = Lane(queued: 0);
        var id = Guid.NewGuid();
        Assert.Multiple(() =>
        {
            Assert.That(lane.TryEnqueue(id, T0, 10, T0), Is.True);
            Assert.That(lane.TryEnqueue(id, T0, 10, T0), Is.True);
            Assert.That(lane.Queued, Is.EqualTo(1));
        });
    }

    [Test]
    public void A_full_lane_refuses_more_and_once_backlogged_refuses_until_the_backlog_is_taken_back()
    {
        var lane = Lane(queued: 0);
        Assert.That(lane.TryEnqueue(Guid.NewGuid(), T0, 2, T0), Is.True);
        Assert.That(lane.TryEnqueue(Guid.NewGuid(), T0, 2, T0), Is.True);
        Assert.That(lane.TryEnqueue(Guid.NewGuid(), T0, 2, T0), Is.False, "full");
        lane.Backlogged = true;
        Start(lane, 2, T0);
        Assert.Multiple(() =>
        {
            Assert.That(lane.TryEnqueue(Guid.NewGuid(), T0, 2, T0), Is.False, "room, but older deliveries wait in the backlog");
            Assert.That(lane.TryEnqueue(Guid.NewGuid(), T0, 2, T0, fromBacklog: true), Is.True);
            Assert.That(lane.IsIdle, Is.False);
        });
    }

    [Test]
    public void Deliveries_put_back_after_a_failed_claim_go_first()
    {
        var lane = Lane(queued: 0);
        var ids = Enumerable.Range(0, 4).Select(_ => Guid.NewGuid()).ToList();
        foreach (var id in ids) lane.TryEnqueue(id, T0, 10, T0);
        var taken = lane.Take(2);
        lane.PutBack(taken);
        Assert.That(lane.WaitingDeliveries.Select(w => w.DeliveryId), Is.EqualTo(ids));
    }
}
