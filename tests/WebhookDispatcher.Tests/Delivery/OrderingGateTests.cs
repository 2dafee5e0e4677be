using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// The SQL of ordered delivery (decision 0014) on a database of the test's own, where no dispatcher
/// claims its rows: what the fan-out stores, the claim's gate, the reconciler's choice of each
/// key's head, and the look-up of a key's next delivery.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class OrderingGateTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 8, 0, 0, TimeSpan.Zero);

    private sealed class Setup : IAsyncDisposable
    {
        public required ScratchDatabase Database { get; init; }
        public required NpgsqlDataSource DataSource { get; init; }
        public required Guid SubscriptionId { get; init; }

        /// <summary>Event ids of key a (occurred 0, 1, 2 s) and key b (occurred 3 s), published in that order.</summary>
        public required Guid[] A { get; init; }
        public required Guid B { get; init; }

        public FanOutStore FanOut => new(DataSource);

        public LaneStore Lanes(int settleMilliseconds) =>
            new(DataSource, new DispatcherIdentity(), null, Options.Create(new DeliveryOptions { OrderingSettleMilliseconds = settleMilliseconds }));

        public async Task<Dictionary<Guid, Guid>> DeliveryIdsAsync()
        {
            await using var db = OrderingRecoveryTests.Context(DataSource);
            return await db.Deliveries.Where(d => d.SubscriptionId == SubscriptionId).ToDictionaryAsync(d => d.EventId, d => d.Id);
        }

        public async Task<string> UserAsync()
        {
            await using var cmd = DataSource.CreateCommand($"SELECT user_id FROM webhook_subscriptions WHERE id = '{SubscriptionId}'");
            return (string)(await cmd.ExecuteScalarAsync())!;
        }

        public async Task ExecuteAsync(string sql)
        {
            await using var cmd = DataSource.CreateCommand(sql);
            await cmd.ExecuteNonQueryAsync();
        }

        public async ValueTask DisposeAsync()
        {
            await DataSource.DisposeAsync();
            await Database.DisposeAsync();
        }
    }

    private static async Task<Setup> CreateAsync(string ordering)
    {
        var database = await ScratchDatabase.CreateAsync("ordering-gate", migrate: true);
        var dataSource = NpgsqlDataSource.Create(database.ConnectionString);
        var subscription = new WebhookSubscription
        {
            Id = Guid.NewGuid(),
            UserId = Events.NewUser(),
            Url = "http://127.0.0.1:9/never-called",
            EventTypes = ["task.updated"],
            Secret = "whsec_test",
            Ordering = ordering,
        };
        await using (var db = OrderingRecoveryTests.Context(dataSource))
        {
            db.Subscriptions.Add(subscription);
            await db.SaveChangesAsync();
        }
        var a = new[] { Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid() };
        var b = Guid.NewGuid();
        var events = a.Select((id, i) => Event(subscription.UserId, id, i, "task_id:a")).Append(Event(subscription.UserId, b, 3, "task_id:b")).ToList();
        // Room to claim at insert for the subscription: an ordered delivery must still not be claimed.
        var stored = await new FanOutStore(dataSource).FanOutAndClaimAsync(events, new ClaimGrant([subscription.Id], [10]), Guid.NewGuid(),
            Events.MiddayUtc, CancellationToken.None);
        if (ordering != SubscriptionOrdering.None)
            Assert.Multiple(() =>
            {
                Assert.That(stored.Claimed, Is.Empty, "an ordered delivery is never claimed at insert");
                Assert.That(stored.Settling, Has.Count.EqualTo(4), "they are offered once settled");
                Assert.That(stored.Work, Is.Empty);
            });
        return new Setup { Database = database, DataSource = dataSource, SubscriptionId = subscription.Id, A = a, B = b };
    }

    private static FanOutEvent Event(string user, Guid id, int second, string key) =>
        new(id, user, "task.updated", $$"""{"id":"{{id}}"}""", OccurredAt: T0.AddSeconds(second), OrderingKey: key);

    [Test]
    public async Task The_fan_out_stores_the_key_and_when_the_event_occurred()
    {
        await using var perKey = await CreateAsync(SubscriptionOrdering.PerKey);
        await using var strict = await CreateAsync(SubscriptionOrdering.Strict);
        await using var none = await CreateAsync(SubscriptionOrdering.None);

        async Task<List<(string? Key, DateTimeOffset? OccurredAt)>> RowsAsync(Setup s)
        {
            await using var cmd = s.DataSource.CreateCommand("SELECT ordering_key, occurred_at FROM webhook_deliveries ORDER BY occurred_at");
            await using var r = await cmd.ExecuteReaderAsync();
            var rows = new List<(string?, DateTimeOffset?)>();
            while (await r.ReadAsync()) rows.Add((r.IsDBNull(0) ? null : r.GetString(0), r.GetFieldValue<DateTimeOffset>(1)));
            return rows;
        }

        var occurred = Enumerable.Range(0, 4).Select(i => (DateTimeOffset?)T0.AddSeconds(i)).ToArray();
        var (perKeyRows, strictRows, noneRows) = (await RowsAsync(perKey), await RowsAsync(strict), await RowsAsync(none));
        Assert.Multiple(() =>
        {
            Assert.That(perKeyRows, Is.EqualTo(new string?[] { "task_id:a", "task_id:a", "task_id:a", "task_id:b" }.Zip(occurred)));
            Assert.That(strictRows, Is.EqualTo(new string?[] { "", "", "", "" }.Zip(occurred)));
            Assert.That(noneRows, Is.EqualTo(new string?[] { null, null, null, null }.Zip(occurred)));
        });
    }

    [Test]
    public async Task The_claim_starts_only_each_keys_head_and_only_once_it_settled()
    {
        await using var s = await CreateAsync(SubscriptionOrdering.PerKey);
        var ids = await s.DeliveryIdsAsync();

        var unsettled = await s.Lanes(settleMilliseconds: 60_000).ClaimAsync([.. ids.Values], CancellationToken.None);
        var claimed = await s.Lanes(settleMilliseconds: 0).ClaimAsync([.. ids.Values], CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(unsettled, Is.Empty, "stored less than the settle time ago");
            Assert.That(claimed.Select(c => c.EventId), Is.EquivalentTo(new[] { s.A[0], s.B }), "the head of each key");
            Assert.That(claimed.All(c => c.Ordered), Is.True);
        });
    }

    [Test]
    public async Task An_earlier_event_stored_late_waits_while_a_later_one_of_its_key_is_in_flight_then_goes_first()
    {
        await using var s = await CreateAsync(SubscriptionOrdering.PerKey);
        var ids = await s.DeliveryIdsAsync();
        var lanes = s.Lanes(0);
        var head = await lanes.ClaimAsync([ids[s.A[0]]], CancellationToken.None);
        // Stored after the head started: it occurred before every event of its key.
        var late = Guid.NewGuid();
        var user = await s.UserAsync();
        await s.FanOut.FanOutAsync([Event(user, late, -1, "task_id:a")], Events.MiddayUtc, CancellationToken.None);
        var lateId = (await s.DeliveryIdsAsync())[late];

        var whileInFlight = await lanes.ClaimAsync([lateId, ids[s.A[1]]], CancellationToken.None);
        await s.ExecuteAsync($"UPDATE webhook_deliveries SET status = 'success', completed_at = now(), in_flight = false WHERE id = '{ids[s.A[0]]}'");
        var afterwards = await lanes.ClaimAsync([lateId, ids[s.A[1]]], CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(head.Select(c => c.EventId), Is.EqualTo(new[] { s.A[0] }), "control: the head started");
            Assert.That(whileInFlight, Is.Empty, "nothing of the key starts while one of it is in flight");
            Assert.That(afterwards.Select(c => c.EventId), Is.EqualTo(new[] { late }), "then the earliest goes first");
        });
    }

    [Test]
    public async Task Strict_claims_one_for_the_whole_subscription_and_none_lets_every_one_go()
    {
        await using var s = await CreateAsync(SubscriptionOrdering.Strict);
        var ids = await s.DeliveryIdsAsync();

        var strict = await s.Lanes(0).ClaimAsync([.. ids.Values], CancellationToken.None);
        await s.ExecuteAsync("UPDATE webhook_subscriptions SET ordering = 'none'");
        var released = await s.Lanes(0).ClaimAsync([.. ids.Values], CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(strict.Select(c => c.EventId), Is.EqualTo(new[] { s.A[0] }));
            Assert.That(released.Select(c => c.EventId), Is.EquivalentTo(new[] { s.A[1], s.A[2], s.B }), "ordering off: the gate is gone");
        });
    }

    [Test]
    public async Task The_reconciler_republishes_only_each_keys_head()
    {
        await using var s = await CreateAsync(SubscriptionOrdering.PerKey);
        await s.ExecuteAsync("UPDATE webhook_deliveries SET next_retry_at = now() - interval '10 minutes', held_by = NULL");
        var recovery = new RecoveryStore(s.DataSource, Options.Create(new DeliveryOptions()));

        var work = await recovery.ReclaimOverdueAsync(Guid.NewGuid(), TimeSpan.Zero, 100, TimeSpan.FromHours(1), TimeSpan.Zero, CancellationToken.None);

        var ids = await s.DeliveryIdsAsync();
        Assert.That(work.Select(w => w.DeliveryId), Is.EquivalentTo(new[] { ids[s.A[0]], ids[s.B] }));
    }

    [Test]
    public async Task Once_a_head_is_final_its_next_is_found_with_the_time_it_still_has_to_settle()
    {
        await using var s = await CreateAsync(SubscriptionOrdering.PerKey);
        var ids = await s.DeliveryIdsAsync();
        var store = new OrderingStore(s.DataSource);

        var whileUnfinished = await store.NextOfKeysAsync([ids[s.A[0]]], TimeSpan.FromMinutes(1), CancellationToken.None);
        await s.ExecuteAsync($"UPDATE webhook_deliveries SET status = 'failed', completed_at = now() WHERE id = '{ids[s.A[0]]}'");
        var next = await store.NextOfKeysAsync([ids[s.A[0]]], TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(whileUnfinished.Select(h => h.Work.DeliveryId), Is.EqualTo(new[] { ids[s.A[0]] }), "the head itself while it is unfinished");
            Assert.That(next.Select(h => h.Work.DeliveryId), Is.EqualTo(new[] { ids[s.A[1]] }), "after a final failure: the next one (skip and go on)");
            Assert.That(next.Single().SettlesIn, Is.GreaterThan(TimeSpan.FromSeconds(30)).And.LessThanOrEqualTo(TimeSpan.FromMinutes(1)));
        });
    }
}
