using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

[Parallelizable(ParallelScope.All)]
public sealed class ReconcilerTests
{
    private static async Task<WebhookDelivery> StoreDeliveryAsync(Guid subscriptionId, int attemptCount, int maxAttempts, string status,
        DateTimeOffset nextRetryAt, bool inFlight = false)
    {
        var delivery = new WebhookDelivery
        {
            Id = Guid.CreateVersion7(), // deliveries live in the day partition of their id's time
            SubscriptionId = subscriptionId,
            EventId = Guid.NewGuid(),
            EventType = "email.received",
            Payload = """{"id":"lost"}""",
            Status = status,
            AttemptCount = attemptCount,
            MaxAttempts = maxAttempts,
            CreatedAt = DateTimeOffset.UtcNow.AddMinutes(-30),
            NextRetryAt = nextRetryAt,
            InFlight = inFlight,
        };
        await Dispatcher.QueryAsync(async db =>
        {
            db.Deliveries.Add(delivery);
            return await db.SaveChangesAsync();
        });
        return delivery;
    }

    [Test]
    public async Task A_delivery_whose_message_was_lost_is_republished_and_attempted()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"]);
        // As if the process died between the fan-out's commit and its publish.
        var delivery = await StoreDeliveryAsync(subscription.Id, 0, 4, DeliveryStatus.Pending, DateTimeOffset.UtcNow.AddMinutes(-10));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(receiver.Requests[0].Headers["x-webhook-delivery"], Is.EqualTo(delivery.Id.ToString()));
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(10)), Is.True);
    }

    [Test]
    public async Task An_attempt_that_never_finished_is_made_again_instead_of_using_up_the_last_attempt()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url, ["email.received"], retryCount: 1);
        // Attempt 1 failed and was recorded; attempt 2 of 2 was claimed, then the process was
        // killed before recording it, and its lease ran out long ago.
        var delivery = await StoreDeliveryAsync(subscription.Id, 2, 2, DeliveryStatus.Retrying, DateTimeOffset.UtcNow.AddMinutes(-10), inFlight: true);
        await Dispatcher.QueryAsync(async db =>
        {
            db.DeliveryAttempts.Add(new WebhookDeliveryAttempt
            {
                DeliveryId = delivery.Id, AttemptNumber = 1, AttemptedAt = DateTimeOffset.UtcNow.AddMinutes(-11), DurationMs = 5,
                StatusCode = 500, Outcome = AttemptOutcome.HttpStatus,
            });
            return await db.SaveChangesAsync();
        });

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True);
        var stored = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(stored.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 500), (2, 200) }));
            Assert.That(stored.AttemptCount, Is.EqualTo(2));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task An_attempt_whose_dispatcher_died_is_made_again_without_waiting_for_its_lease_while_a_live_dispatchers_is_left_alone()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var dead = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url + "/dead", ["email.received"]);
        var alive = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url + "/alive", ["email.received"]);
        // Attempt 1 of each was claimed a minute ago and is leased for 30 more minutes; the
        // dispatcher that claimed the first has no heartbeat (killed), the second's is alive.
        var lost = await StoreDeliveryAsync(dead.Id, 1, 4, DeliveryStatus.Pending, DateTimeOffset.UtcNow.AddMinutes(30), inFlight: true);
        var running = await StoreDeliveryAsync(alive.Id, 1, 4, DeliveryStatus.Pending, DateTimeOffset.UtcNow.AddMinutes(30), inFlight: true);
        var (killed, live) = (Guid.NewGuid(), Guid.NewGuid());
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync(
            $"INSERT INTO webhook_dispatchers (id, alive_until) VALUES ({live}, now() + interval '10 minutes')"));
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"""
            UPDATE webhook_deliveries SET last_attempt_at = now() - interval '1 minute',
                   held_by = CASE WHEN id = {lost.Id} THEN {killed} ELSE {live} END
            WHERE id IN ({lost.Id}, {running.Id})
            """));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        Assert.That(await Dispatcher.DeliveryReachesAsync(dead.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True,
            "the dead dispatcher's attempt is made again at once");
        var stored = (await Dispatcher.DeliveriesAsync(dead.Id)).Single();
        var untouched = (await Dispatcher.DeliveriesAsync(alive.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(stored.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 200) }), "the lost attempt is not counted");
            Assert.That(receiver.To("/alive"), Is.Empty, "a live dispatcher's attempt is left to it");
            Assert.That((untouched.InFlight, untouched.AttemptCount), Is.EqualTo((true, 1)));
        });
        await Dispatcher.QueryAsync(db => db.Deliveries.Where(d => d.Id == running.Id)
            .ExecuteUpdateAsync(u => u.SetProperty(d => d.Status, DeliveryStatus.Cancelled).SetProperty(d => d.NextRetryAt, (DateTimeOffset?)null)));
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlAsync($"DELETE FROM webhook_dispatchers WHERE id = {live}"));
    }

    [Test]
    public async Task A_delivery_that_is_not_overdue_is_left_to_the_broker()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var subscription = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url + "/due-later", ["email.received"]);
        var control = await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url + "/overdue", ["email.received"]);
        var notDue = await StoreDeliveryAsync(subscription.Id, 1, 4, DeliveryStatus.Retrying, DateTimeOffset.UtcNow.AddSeconds(30));
        await StoreDeliveryAsync(control.Id, 1, 4, DeliveryStatus.Retrying, DateTimeOffset.UtcNow.AddMinutes(-10));

        await Dispatcher.Services.GetRequiredService<DeliveryReconciler>().RunOnceAsync(CancellationToken.None);

        // Control: the overdue delivery, re-published by the same pass, has been delivered.
        Assert.That(await Dispatcher.DeliveryReachesAsync(control.Id, DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(receiver.To("/due-later"), Is.Empty);
        // Not for a later pass of another test either (its receiver is gone by then).
        await Dispatcher.QueryAsync(db => db.Deliveries.Where(d => d.Id == notDue.Id)
            .ExecuteUpdateAsync(u => u.SetProperty(d => d.Status, DeliveryStatus.Cancelled).SetProperty(d => d.NextRetryAt, (DateTimeOffset?)null)));
    }
}
