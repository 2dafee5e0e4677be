using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Large payloads are stored once per event (<see cref="EventPayloads"/>, docs/decisions/0009): one
/// row in <c>webhook_event_payloads</c> however many subscriptions the event has, deliveries that
/// point at it, and every POST the exact bytes; small payloads stay in the delivery rows.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class EventPayloadTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Test]
    public async Task A_large_event_for_three_subscriptions_is_stored_once_and_each_receives_its_exact_bytes_signed()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscriptions = new List<WebhookDispatcher.Subscriptions.WebhookSubscription>();
        for (var i = 0; i < 3; i++)
            subscriptions.Add(await Dispatcher.SubscribeAsync(user, $"{receiver.Url}/s{i}", ["email.received"]));
        var evt = Large(user, 100_000);
        var payload = Encoding.UTF8.GetBytes(WebhookPayload.Build(evt));

        await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(3, Patience), Is.True, "three POSTs within 30 s");
        var rows = await RowsAsync(evt.EventId);
        Assert.Multiple(async () =>
        {
            Assert.That(rows.Select(r => r.Inline), Is.All.Null, "no delivery row holds the payload");
            Assert.That(rows.Select(r => r.PayloadId).Distinct().ToList(), Has.Count.EqualTo(1).And.None.Null, "all point at one payload");
            Assert.That(await PayloadRowsAsync(evt.EventId), Is.EqualTo(1), "one payload row for the event");
            foreach (var (request, subscription) in receiver.Requests.OrderBy(r => r.Path).Zip(subscriptions))
            {
                Assert.That(request.Body, Is.EqualTo(payload), $"{request.Path}: byte for byte the payload");
                Assert.That(Signatures.LegacyVerifies(request, subscription.Secret), Is.True, $"{request.Path}: X-Webhook-Signature");
                Assert.That(Signatures.StandardVerifies(request, subscription.Secret), Is.True, $"{request.Path}: webhook-signature");
            }
        });
    }

    [Test]
    public async Task A_batch_of_a_large_and_a_small_event_stores_each_its_way_and_a_repeat_adds_nothing()
    {
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called-1", ["email.received"]);
        await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called-2", ["email.received"]);
        var large = Large(user, EventPayloads.SeparateFromChars + 10);
        var small = Events.EmailReceived(user);
        var nobodys = Large(Events.NewUser(), 20_000); // a user without subscriptions: no payload row either
        var store = Dispatcher.Services.GetRequiredService<FanOutStore>();
        FanOutEvent[] batch = [Of(large), Of(small), Of(nobodys)];
        // Midday: the statement without the look across days (a first delivery, as almost all are).
        var midday = Events.MiddayUtc;

        var first = await store.FanOutAsync(batch, midday, CancellationToken.None);
        var again = await store.FanOutAsync([.. batch.Select(e => e with { MaybeSeen = true })], midday, CancellationToken.None);

        var largeRows = await RowsAsync(large.EventId);
        var smallRows = await RowsAsync(small.EventId);
        Assert.Multiple(async () =>
        {
            Assert.That(first, Has.Count.EqualTo(4), "two deliveries for each of the user's events");
            Assert.That(again.Select(w => w.DeliveryId), Is.EquivalentTo(first.Select(w => w.DeliveryId)),
                "the repeat finds the same deliveries, never attempted, and makes none");
            Assert.That(largeRows.Select(r => r.Inline), Is.All.Null);
            Assert.That(largeRows.Select(r => r.PayloadId).Distinct().ToList(), Has.Count.EqualTo(1).And.None.Null);
            Assert.That(await PayloadRowsAsync(large.EventId), Is.EqualTo(1), "one payload row, not one per copy");
            Assert.That(await PayloadTextAsync(largeRows[0].PayloadId!.Value), Is.EqualTo(WebhookPayload.Build(large)));
            Assert.That(smallRows.Select(r => r.Inline), Is.All.EqualTo(WebhookPayload.Build(small)), "a small payload stays in each row");
            Assert.That(smallRows.Select(r => r.PayloadId), Is.All.Null);
            Assert.That(await PayloadRowsAsync(nobodys.EventId), Is.Zero, "an event that makes no delivery stores no payload");
        });
    }

    [Test]
    public async Task A_delivery_whose_stored_payload_was_removed_by_hand_fails_with_that_reason_and_is_not_sent()
    {
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called", ["email.received"]);
        var evt = Large(user, 20_000);
        var work = await Dispatcher.Services.GetRequiredService<FanOutStore>().FanOutAsync([Of(evt)],
            Events.MiddayUtc, CancellationToken.None);
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlInterpolatedAsync($"DELETE FROM webhook_event_payloads WHERE event_id = {evt.EventId}"));

        var claimed = await Dispatcher.Services.GetRequiredService<LaneStore>().ClaimAsync([work.Single().DeliveryId], CancellationToken.None);

        var delivery = (await Dispatcher.DeliveriesAsync(subscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(claimed, Is.Empty, "nothing to send");
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(delivery.ErrorMessage, Does.Contain("payload is gone"));
            Assert.That(delivery.InFlight, Is.False);
        });
    }

    [Test]
    public async Task A_large_events_deliveries_claimed_in_two_passes_read_its_payload_from_the_database_once()
    {
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called-1", ["email.received"]);
        await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called-2", ["email.received"]);
        var evt = Large(user, 30_000);
        var work = await Dispatcher.Services.GetRequiredService<FanOutStore>().FanOutAsync([Of(evt)],
            Events.MiddayUtc, CancellationToken.None);
        var lanes = Dispatcher.Services.GetRequiredService<LaneStore>();

        var first = await lanes.ClaimAsync([work[0].DeliveryId], CancellationToken.None);
        // Gone from the database: the second pass can only have it from the first pass's read.
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlInterpolatedAsync($"DELETE FROM webhook_event_payloads WHERE event_id = {evt.EventId}"));
        var second = await lanes.ClaimAsync([work[1].DeliveryId], CancellationToken.None);

        var payload = Encoding.UTF8.GetBytes(WebhookPayload.Build(evt));
        Assert.Multiple(() =>
        {
            Assert.That(first.Single().Body, Is.EqualTo(payload));
            Assert.That(second.Single().Body, Is.SameAs(first.Single().Body), "one copy in memory, read once");
        });
    }

    private static FanOutEvent Of(EmailReceived evt) => new(evt.EventId, evt.UserId, "email.received", WebhookPayload.Build(evt));

    /// <summary>An <c>email.received</c> event of <paramref name="user"/> whose payload is at least <paramref name="chars"/> characters.</summary>
    private static EmailReceived Large(string user, int chars)
    {
        var evt = Events.EmailReceived(user);
        return evt with { BodyPreview = new string('x', chars) };
    }

    private static Task<List<(string? Inline, Guid? PayloadId)>> RowsAsync(Guid eventId) =>
        Dispatcher.QueryAsync(async db =>
        {
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            await db.Database.OpenConnectionAsync();
            await using var cmd = new NpgsqlCommand("SELECT payload, payload_id FROM webhook_deliveries WHERE event_id = $1", connection);
            cmd.Parameters.Add(new NpgsqlParameter { Value = eventId });
            var rows = new List<(string?, Guid?)>();
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync())
                rows.Add((reader.IsDBNull(0) ? null : reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetGuid(1)));
            return rows;
        });

    private static Task<long> PayloadRowsAsync(Guid eventId) =>
        Dispatcher.QueryAsync(db => db.Database.SqlQuery<long>($"SELECT count(*) AS \"Value\" FROM webhook_event_payloads WHERE event_id = {eventId}").SingleAsync());

    private static Task<string> PayloadTextAsync(Guid payloadId) =>
        Dispatcher.QueryAsync(db => db.Database.SqlQuery<string>($"SELECT payload AS \"Value\" FROM webhook_event_payloads WHERE id = {payloadId}").SingleAsync());
}
