using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.WebhookDemo;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

[Parallelizable(ParallelScope.All)]
public sealed class FanOutTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Test]
    public async Task An_event_reaches_exactly_the_active_subscriptions_of_its_type_with_verifiable_signatures()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var first = await Dispatcher.SubscribeAsync(user, receiver.Url + "/first", ["email.received", "task.completed"]);
        var second = await Dispatcher.SubscribeAsync(user, receiver.Url + "/second", ["email.received"]);
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/other-type", ["task.completed"]);
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/inactive", ["email.received"], isActive: false);
        await Dispatcher.SubscribeAsync(Events.NewUser(), receiver.Url + "/other-user", ["email.received"]);
        var evt = Events.EmailReceived(user);

        await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "two POSTs within 30 s");
        // One statement wrote the event's deliveries, all of them before any POST: a wrong POST
        // would need a wrong row, and that row would be here already.
        var rows = await Dispatcher.QueryAsync(db => db.Deliveries.Where(d => d.EventId == evt.EventId).Select(d => d.SubscriptionId).ToListAsync());
        Assert.That(rows, Is.EquivalentTo(new[] { first.Id, second.Id }));
        var requests = receiver.Requests;
        Assert.That(requests.Select(r => r.Path), Is.EquivalentTo(new[] { "/first", "/second" }));
        foreach (var (request, secret) in requests.Select(r => (r, r.Path == "/first" ? first.Secret : second.Secret)))
        {
            using var body = JsonDocument.Parse(request.Body);
            Assert.Multiple(() =>
            {
                Assert.That(Signatures.LegacyVerifies(request, secret), Is.True, "X-Webhook-Signature");
                Assert.That(Signatures.StandardVerifies(request, secret), Is.True, "webhook-signature");
                Assert.That(WebhookVerifier.VerifyLegacy(secret, request.Body, request.Headers["x-webhook-signature"]), Is.True,
                    "the documented receiver example accepts X-Webhook-Signature");
                Assert.That(WebhookVerifier.VerifyStandard(secret, request.Headers["webhook-id"], request.Headers["webhook-timestamp"],
                    request.Headers["webhook-signature"], request.Body, DateTimeOffset.UtcNow), Is.True,
                    "the documented receiver example accepts webhook-signature");
                Assert.That(WebhookVerifier.VerifyLegacy(secret, [.. request.Body, (byte)' '], request.Headers["x-webhook-signature"]), Is.False,
                    "a changed body fails verification");
                Assert.That(request.Headers["content-type"], Is.EqualTo("application/json; charset=utf-8"));
                Assert.That(request.Headers["x-webhook-event"], Is.EqualTo("email.received"));
                Assert.That(request.Headers["webhook-id"], Is.EqualTo(evt.EventId.ToString()));
                Assert.That(long.Parse(request.Headers["webhook-timestamp"]),
                    Is.EqualTo(DateTimeOffset.UtcNow.ToUnixTimeSeconds()).Within(60));
                Assert.That(body.RootElement.GetProperty("id").GetGuid(), Is.EqualTo(evt.EventId));
                Assert.That(body.RootElement.GetProperty("data").GetProperty("subject").GetString(), Is.EqualTo(evt.Subject));
            });
        }

        var deliveries = await Dispatcher.DeliveriesAsync(first.Id);
        Assert.That(deliveries.Single().Status, Is.EqualTo(DeliveryStatus.Success));
        Assert.That(requests.Single(r => r.Path == "/first").Headers["x-webhook-delivery"], Is.EqualTo(deliveries.Single().Id.ToString()));
    }

    [Test]
    public async Task The_same_event_published_twice_makes_one_delivery_and_one_POST()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(204);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url + "/first", ["email.received"]);
        var evt = Events.EmailReceived(user);

        await Dispatcher.PublishAsync(evt);
        Assert.That(await Dispatcher.DeliveryReachesAsync(subscription.Id, DeliveryStatus.Success, Patience), Is.True);
        // Control: a subscription the first copy did not know. The second copy's fan-out gives it a
        // delivery in the statement that skips the existing one; once it is delivered, the second
        // copy was processed through to its POSTs.
        var control = await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"]);
        await Dispatcher.PublishAsync(evt);

        Assert.That(await Dispatcher.DeliveryReachesAsync(control.Id, DeliveryStatus.Success, Patience), Is.True, "control: the second copy was fanned out");
        Assert.Multiple(async () =>
        {
            Assert.That(receiver.To("/first"), Has.Count.EqualTo(1));
            Assert.That(receiver.To("/control"), Has.Count.EqualTo(1));
            Assert.That(await Dispatcher.DeliveriesAsync(subscription.Id), Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task Every_attempt_sends_the_same_bytes()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 503);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True);
        var requests = receiver.Requests;
        Assert.That(requests[1].Body, Is.EqualTo(requests[0].Body));
        Assert.That(requests[1].Headers["webhook-id"], Is.EqualTo(requests[0].Headers["webhook-id"]));
    }

    [Test]
    public async Task A_copy_published_just_after_midnight_UTC_finds_the_delivery_made_just_before()
    {
        // Deliveries live in day partitions, and (subscription, event) is unique only within one.
        // The first copy of an event landed at 23:55 UTC (its id carries that time, so its row is
        // in the day before); a publisher's retry of it is fanned out at 00:10. Nothing about the
        // second copy says it may be a repeat (not redelivered by the broker), so only the time of
        // day can send it to the look across two days.
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called", ["email.received"]);
        var evt = Events.EmailReceived(user);
        var midnight = new DateTimeOffset(DateTime.UtcNow.Date, TimeSpan.Zero);
        var firstCopy = DeliveryIds.Floor(midnight - TimeSpan.FromMinutes(5) - TimeSpan.FromMilliseconds(Random.Shared.Next(1, 60_000)));
        var createdAt = DeliveryIds.CreatedAt(firstCopy);
        const string payload = "{}";
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlInterpolatedAsync($"""
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts,
                                            created_at, next_retry_at)
            VALUES ({firstCopy}, {subscription.Id}, 'email.received', {evt.EventId}, {payload}, {DeliveryStatus.Success}, 1, 8,
                    {createdAt}, {createdAt})
            """));
        var store = Dispatcher.Services.GetRequiredService<FanOutStore>();

        var work = await store.FanOutAsync([new FanOutEvent(evt.EventId, user, "email.received", payload)],
            midnight + TimeSpan.FromMinutes(10), CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(work, Is.Empty, "nothing new to attempt");
            Assert.That(await Dispatcher.QueryAsync(db => db.Deliveries.Where(d => d.EventId == evt.EventId).Select(d => d.Id).ToListAsync()),
                Is.EqualTo(new[] { firstCopy }), "no second delivery");
        });
    }
}
