using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// What one reconciler pass takes and what it leaves alone. Not parallel, so no other test's
/// pass takes these deliveries; each "left alone" beside a control the same pass did re-publish.
/// </summary>
[NonParallelizable]
public sealed class ReconcilerGraceTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static async Task<Guid> StoreAsync(Guid subscriptionId, DateTimeOffset? nextRetryAt, DateTimeOffset? heldUntil,
        int attemptCount = 0, int lostAttempts = 0)
    {
        var delivery = new WebhookDelivery
        {
            Id = Guid.CreateVersion7(),
            SubscriptionId = subscriptionId,
            EventId = Guid.NewGuid(),
            EventType = "email.received",
            Payload = """{"id":"reconciled"}""",
            Status = DeliveryStatus.Pending,
            MaxAttempts = 4,
            CreatedAt = DateTimeOffset.UtcNow.AddMinutes(-5),
            NextRetryAt = nextRetryAt,
            HeldUntil = heldUntil,
            AttemptCount = attemptCount,
            LostAttempts = lostAttempts,
            InFlight = attemptCount > 0, // claimed and never recorded: the process died mid-attempt
        };
        await Dispatcher.QueryAsync(async db =>
        {
            db.Deliveries.Add(delivery);
            return await db.SaveChangesAsync();
        });
        return delivery.Id;
    }

    private static async Task<(TestReceiver Receiver, Guid Subscription)> EndpointAsync()
    {
        var receiver = await TestReceiver.AnsweringAsync(200);
        return (receiver, (await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"])).Id);
    }

    private static Task CancelAsync(params Guid[] ids) => Dispatcher.QueryAsync(db => db.Deliveries.Where(d => ids.Contains(d.Id))
        .ExecuteUpdateAsync(u => u.SetProperty(d => d.Status, DeliveryStatus.Cancelled).SetProperty(d => d.NextRetryAt, (DateTimeOffset?)null)));

    [Test]
    public async Task An_overdue_delivery_inside_the_grace_period_is_left_to_the_broker_while_one_past_it_is_republished()
    {
        var (late, lateSubscription) = await EndpointAsync();
        var (recent, recentSubscription) = await EndpointAsync();
        await using var _ = late;
        await using var __ = recent;
        var now = DateTimeOffset.UtcNow;
        await StoreAsync(lateSubscription, now.AddSeconds(-60), null);
        var withinGrace = await StoreAsync(recentSubscription, now.AddSeconds(-3), null); // grace is 10 s

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await late.WaitForAsync(1, Patience), Is.True, "control: the pass re-published the delivery past its grace");
        Assert.That(recent.Requests, Is.Empty);
        await CancelAsync(withinGrace);
    }

    [Test]
    public async Task A_delivery_held_by_a_replicas_lane_is_left_alone_until_its_hold_ends()
    {
        var (free, freeSubscription) = await EndpointAsync();
        var (held, heldSubscription) = await EndpointAsync();
        await using var _ = free;
        await using var __ = held;
        var now = DateTimeOffset.UtcNow;
        await StoreAsync(freeSubscription, now.AddSeconds(-60), now.AddSeconds(-1));
        var heldId = await StoreAsync(heldSubscription, now.AddSeconds(-60), now.AddSeconds(30));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await free.WaitForAsync(1, Patience), Is.True, "control: an overdue delivery whose hold ended is re-published");
        Assert.That(held.Requests, Is.Empty);
        await CancelAsync(heldId);
    }

    [Test]
    public async Task A_backlog_whose_replica_stopped_is_republished_while_a_held_backlog_is_left_alone()
    {
        var (abandoned, abandonedSubscription) = await EndpointAsync();
        var (held, heldSubscription) = await EndpointAsync();
        await using var _ = abandoned;
        await using var __ = held;
        var now = DateTimeOffset.UtcNow;
        await StoreAsync(abandonedSubscription, null, now.AddSeconds(-1));
        await StoreAsync(abandonedSubscription, null, null);
        var heldId = await StoreAsync(heldSubscription, null, now.AddSeconds(60));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await abandoned.WaitForAsync(2, Patience), Is.True, "control: the abandoned backlog is delivered");
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(abandonedSubscription)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True);
        Assert.That(held.Requests, Is.Empty);
        await CancelAsync(heldId);
    }

    [Test]
    public async Task A_pass_never_takes_its_own_dispatchers_attempts_or_holds_for_a_dead_ones_even_with_its_heartbeat_lapsed()
    {
        var (own, ownSubscription) = await EndpointAsync();
        var (other, otherSubscription) = await EndpointAsync();
        await using var _ = own;
        await using var __ = other;
        // Each dispatcher claimed an attempt a minute ago (leased for 30 more minutes) and holds a
        // delivery overdue by a minute in its lanes. Neither heartbeat lives: the pass's own lapsed
        // (as in a database outage), the other's is gone (killed).
        var now = DateTimeOffset.UtcNow;
        var ownAttempt = await StoreAsync(ownSubscription, now.AddMinutes(30), null, attemptCount: 1);
        var ownWaiting = await StoreAsync(ownSubscription, now.AddMinutes(-1), null);
        var otherAttempt = await StoreAsync(otherSubscription, now.AddMinutes(30), null, attemptCount: 1);
        var otherWaiting = await StoreAsync(otherSubscription, now.AddMinutes(-1), null);
        var (self, killed) = (Guid.NewGuid(), Guid.NewGuid());
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync(
            $"INSERT INTO webhook_dispatchers (id, alive_until) VALUES ({self}, now() - interval '10 seconds')"));
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"""
            UPDATE webhook_deliveries SET held_by = CASE WHEN subscription_id = {ownSubscription} THEN {self} ELSE {killed} END,
                   last_attempt_at = CASE WHEN in_flight THEN now() - interval '1 minute' END
            WHERE id IN ({ownAttempt}, {ownWaiting}, {otherAttempt}, {otherWaiting})
            """));

        // The pass `self` runs (its work published as the reconciler does).
        var work = await Dispatcher.Services.GetRequiredService<RecoveryStore>().ReclaimOverdueAsync(
            self, TimeSpan.FromSeconds(5), 500, TimeSpan.FromHours(1), TimeSpan.Zero, CancellationToken.None);
        await Dispatcher.Services.GetRequiredService<IPublishEndpoint>()
            .PublishBatch(work.Select(w => new DeliverWebhook(w.DeliveryId, w.SubscriptionId)));

        var taken = work.Select(w => w.DeliveryId).ToHashSet();
        Assert.Multiple(() =>
        {
            Assert.That(taken, Does.Contain(otherAttempt).And.Contain(otherWaiting), "control: the dead dispatcher's attempt and hold are taken");
            Assert.That(taken, Does.Not.Contain(ownAttempt).And.Not.Contain(ownWaiting), "its own are left to it");
        });
        Assert.That(await other.WaitForAsync(2, Patience), Is.True);
        var untouched = (await Dispatcher.DeliveriesAsync(ownSubscription)).ToDictionary(d => d.Id);
        Assert.Multiple(() =>
        {
            Assert.That(own.Requests, Is.Empty);
            Assert.That((untouched[ownAttempt].InFlight, untouched[ownAttempt].AttemptCount), Is.EqualTo((true, 1)));
            Assert.That(untouched[ownWaiting].AttemptCount, Is.Zero);
        });
        await CancelAsync(ownAttempt, ownWaiting);
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"DELETE FROM webhook_dispatchers WHERE id = {self}"));
    }

    [Test]
    public async Task After_a_gap_in_the_passes_a_lapsed_dispatchers_waiting_deliveries_are_left_for_the_grace_then_taken()
    {
        var (receiver, subscription) = await EndpointAsync();
        await using var _ = receiver;
        // Waiting in the lanes of a dispatcher whose heartbeat lapsed: killed, or alive and about
        // to renew it once the database is back.
        var waiting = await StoreAsync(subscription, DateTimeOffset.UtcNow.AddSeconds(-60), null);
        var lapsed = Guid.NewGuid();
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync(
            $"INSERT INTO webhook_dispatchers (id, alive_until) VALUES ({lapsed}, now() - interval '10 seconds')"));
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"UPDATE webhook_deliveries SET held_by = {lapsed} WHERE id = {waiting}"));
        var store = Dispatcher.Services.GetRequiredService<RecoveryStore>();
        Task<IReadOnlyList<DeliveryWork>> PassAsync() => store.ReclaimOverdueAsync(Guid.NewGuid(), TimeSpan.FromSeconds(5), 500,
            TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(30), CancellationToken.None);
        var publish = Dispatcher.Services.GetRequiredService<IPublishEndpoint>();

        // No pass for a minute (the database was away): this one is the first after the gap.
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync(
            $"UPDATE webhook_reconciler_state SET last_pass_at = now() - interval '1 minute' WHERE id = 1"));
        var first = await PassAsync();
        await publish.PublishBatch(first.Select(w => new DeliverWebhook(w.DeliveryId, w.SubscriptionId)));
        // Passes have run for the grace since.
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync(
            $"UPDATE webhook_reconciler_state SET up_since = now() - interval '6 seconds' WHERE id = 1"));
        var later = await PassAsync();
        await publish.PublishBatch(later.Select(w => new DeliverWebhook(w.DeliveryId, w.SubscriptionId)));

        Assert.Multiple(() =>
        {
            Assert.That(first.Select(w => w.DeliveryId), Does.Not.Contain(waiting), "just after the gap: its dispatcher may be renewing its heartbeat");
            Assert.That(later.Select(w => w.DeliveryId), Does.Contain(waiting), "once passes ran for the grace: its dispatcher is gone");
        });
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"DELETE FROM webhook_dispatchers WHERE id = {lapsed}"));
    }

    [Test]
    public async Task An_attempt_lost_a_third_time_fails_the_delivery_instead_of_looping_while_a_first_loss_is_made_again()
    {
        var (again, againSubscription) = await EndpointAsync();
        var (poison, poisonSubscription) = await EndpointAsync();
        await using var _ = again;
        await using var __ = poison;
        var longAgo = DateTimeOffset.UtcNow.AddMinutes(-10);
        // Each was claimed (attempt 1) and never recorded: the process died mid-attempt.
        await StoreAsync(againSubscription, longAgo, null, attemptCount: 1, lostAttempts: 0);
        var poisoned = await StoreAsync(poisonSubscription, longAgo, null, attemptCount: 1, lostAttempts: 2);

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await again.WaitForAsync(1, Patience), Is.True, "control: a first loss is given back and made again");
        var failed = (await Dispatcher.DeliveriesAsync(poisonSubscription)).Single(d => d.Id == poisoned);
        var stats = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == poisonSubscription));
        Assert.Multiple(() =>
        {
            Assert.That(failed.Status, Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(failed.LostAttempts, Is.EqualTo(3));
            Assert.That(failed.ErrorMessage, Does.Contain("3 times"));
            Assert.That(failed.Attempts.Select(a => (a.AttemptNumber, a.Outcome)), Is.EqualTo(new[] { (1, AttemptOutcome.Lost) }));
            Assert.That(stats.FailedDeliveries, Is.EqualTo(1));
            Assert.That(poison.Requests, Is.Empty, "never tried a fourth time");
        });
    }
}
