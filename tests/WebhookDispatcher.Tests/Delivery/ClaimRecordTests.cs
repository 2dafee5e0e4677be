using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using System.Text;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// The claim, the record and the reconciler's give-back against each other, on a database of the
/// test's own (no dispatcher claims its rows meanwhile), and the one clock they share: the database's.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class ClaimRecordTests
{
    private sealed class Stores : IAsyncDisposable
    {
        private Stores(ScratchDatabase database, NpgsqlDataSource dataSource)
        {
            Database = database;
            DataSource = dataSource;
            Lanes = new LaneStore(dataSource, Identity);
            Attempts = new AttemptStore(dataSource, Options.Create(new AutoDisableOptions()));
            Recovery = new RecoveryStore(dataSource, Options.Create(new DeliveryOptions()));
            FanOut = new FanOutStore(dataSource);
        }

        public ScratchDatabase Database { get; }
        public DispatcherIdentity Identity { get; } = new();
        public NpgsqlDataSource DataSource { get; }
        public LaneStore Lanes { get; }
        public AttemptStore Attempts { get; }
        public RecoveryStore Recovery { get; }
        public FanOutStore FanOut { get; }

        public static async Task<Stores> CreateAsync()
        {
            var database = await ScratchDatabase.CreateAsync("claims", migrate: true);
            return new Stores(database, NpgsqlDataSource.Create(database.ConnectionString));
        }

        public async Task<T> QueryAsync<T>(Func<WebhookDbContext, Task<T>> query)
        {
            var options = new DbContextOptionsBuilder<WebhookDbContext>();
            DataExtensions.Configure(options, DataSource);
            await using var db = new WebhookDbContext(options.Options);
            return await query(db);
        }

        /// <summary>A subscription with one pending delivery, due now.</summary>
        public Task<Guid> AddDeliveryAsync(int retryCount = 3) => AddDeliveryAsync(Guid.NewGuid(), "{}", retryCount);

        /// <summary>An active subscription to email.received.</summary>
        public async Task<WebhookSubscription> AddSubscriptionAsync(int retryCount = 3)
        {
            var subscription = new WebhookSubscription
            {
                UserId = "user-" + Guid.NewGuid().ToString("N")[..8],
                Url = "http://127.0.0.1:9/never-called",
                EventTypes = ["email.received"],
                Secret = "whsec_test",
                RetryCount = retryCount,
                CreatedAt = DateTimeOffset.UtcNow,
                UpdatedAt = DateTimeOffset.UtcNow,
            };
            await QueryAsync(async db =>
            {
                db.Subscriptions.Add(subscription);
                return await db.SaveChangesAsync();
            });
            return subscription;
        }

        /// <summary>A subscription with one pending delivery of <paramref name="eventId"/>, due now.</summary>
        public async Task<Guid> AddDeliveryAsync(Guid eventId, string payload, int retryCount = 3)
        {
            var subscription = await AddSubscriptionAsync(retryCount);
            var delivery = new WebhookDelivery
            {
                Id = Guid.CreateVersion7(),
                EventId = eventId,
                EventType = "email.received",
                Payload = payload,
                Status = DeliveryStatus.Pending,
                MaxAttempts = 1 + retryCount,
                CreatedAt = DateTimeOffset.UtcNow,
                NextRetryAt = DateTimeOffset.UtcNow.AddSeconds(-1),
            };
            await QueryAsync(async db =>
            {
                delivery.SubscriptionId = subscription.Id;
                db.Deliveries.Add(delivery);
                return await db.SaveChangesAsync();
            });
            return delivery.Id;
        }

        /// <summary>The lease of a claimed attempt ran out (as if its process had stopped answering for its timeout + 30 s + the grace).</summary>
        public Task ExpireLeaseAsync(Guid deliveryId) =>
            Database.ExecuteInAsync("UPDATE webhook_deliveries SET next_retry_at = now() - interval '1 hour' WHERE id = @id", ("id", deliveryId));

        /// <summary>The dispatcher a delivery is held by or claimed for (<c>held_by</c>, not mapped by EF).</summary>
        public async Task<Guid?> HeldByAsync(Guid deliveryId)
        {
            await using var cmd = DataSource.CreateCommand("SELECT held_by FROM webhook_deliveries WHERE id = $1");
            cmd.Parameters.Add(new() { Value = deliveryId });
            return await cmd.ExecuteScalarAsync() is Guid id ? id : null;
        }

        public Task<IReadOnlyList<DeliveryWork>> GiveBackAsync() =>
            Recovery.ReclaimOverdueAsync(Guid.NewGuid(), TimeSpan.Zero, 100, TimeSpan.FromHours(1), TimeSpan.Zero, CancellationToken.None);

        public async ValueTask DisposeAsync()
        {
            await DataSource.DisposeAsync();
            await Database.DisposeAsync();
        }
    }

    private static FinishedAttempt Answered(ClaimedDelivery claim, int status, DateTimeOffset processNow, TimeSpan? retryAfter = null)
    {
        var response = new WebhookResponse(status is >= 200 and < 300 ? AttemptOutcome.Success : AttemptOutcome.HttpStatus, status, "ok", null,
            TimeSpan.FromMilliseconds(5), retryAfter);
        return new FinishedAttempt(claim, processNow - TimeSpan.FromMilliseconds(5), response,
            AttemptDecision.Decide(claim.AttemptNumber, claim.MaxAttempts, response, processNow), processNow);
    }

    [Test]
    public async Task A_record_that_lands_after_the_reconciler_gave_its_attempt_back_is_kept_and_no_second_attempt_is_claimed()
    {
        await using var stores = await Stores.CreateAsync();
        var id = await stores.AddDeliveryAsync();
        var claim = (await stores.Lanes.ClaimAsync([id], CancellationToken.None)).Single();
        await stores.ExpireLeaseAsync(id);

        var republished = await stores.GiveBackAsync();
        Assert.That(republished.Select(w => w.DeliveryId), Does.Contain(id), "control: the attempt was given back and re-published");

        var moved = await stores.Attempts.RecordAsync([Answered(claim, 200, DateTimeOffset.UtcNow)], TimeSpan.Zero, CancellationToken.None);
        var again = await stores.Lanes.ClaimAsync([id], CancellationToken.None);

        var delivery = await stores.QueryAsync(db => db.Deliveries.Include(d => d.Attempts).SingleAsync(d => d.Id == id));
        Assert.Multiple(() =>
        {
            Assert.That(moved, Does.Contain(id), "the late answer counts");
            Assert.That(again, Is.Empty, "no second attempt (no second POST)");
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Success));
            Assert.That(delivery.AttemptCount, Is.EqualTo(1));
            Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 200) }));
        });
    }

    [Test]
    public async Task A_fan_out_given_room_claims_that_many_deliveries_as_it_inserts_them_and_a_give_back_makes_them_claimable_again()
    {
        await using var stores = await Stores.CreateAsync();
        var subscription = await stores.AddSubscriptionAsync();
        var dispatcherId = stores.Identity.Id;
        var events = Enumerable.Range(0, 3)
            .Select(i => new FanOutEvent(Guid.NewGuid(), subscription.UserId, "email.received", $$"""{"n":{{i}}}""")).ToList();

        var stored = await stores.FanOut.FanOutAndClaimAsync(events, new ClaimGrant([subscription.Id], [2]), dispatcherId,
            DateTimeOffset.UtcNow, CancellationToken.None);

        var rows = await stores.QueryAsync(db => db.Deliveries.Where(d => d.SubscriptionId == subscription.Id).OrderBy(d => d.Id).ToListAsync());
        var claimed = stored.Claimed.ToDictionary(c => c.Id);
        Assert.Multiple(() =>
        {
            Assert.That(stored.Claimed, Has.Count.EqualTo(2), "as many as the room");
            Assert.That(stored.Work, Has.Count.EqualTo(1), "the rest waits for a claim");
            Assert.That(stored.Claimed.Select(c => c.EventId), Is.EqualTo(events.Take(2).Select(e => e.EventId)), "the first events of the statement");
            Assert.That(stored.Claimed.Select(c => Encoding.UTF8.GetString(c.Body)), Is.EqualTo(new[] { """{"n":0}""", """{"n":1}""" }),
                "each with its event's payload as the body");
            Assert.That(stored.Claimed.All(c => c.AttemptNumber == 1 && c.MaxAttempts == 4 && c.Url == subscription.Url && c.Secret == "whsec_test"),
                "with what the attempt needs");
            foreach (var row in rows.Where(r => claimed.ContainsKey(r.Id)))
            {
                Assert.That((row.AttemptCount, row.InFlight), Is.EqualTo((1, true)), "written as the claim leaves a row");
                Assert.That(row.FirstAttemptAt, Is.EqualTo(row.CreatedAt), "claimed in the statement that made it");
                Assert.That(row.LastAttemptAt, Is.EqualTo(claimed[row.Id].ClaimedAt), "the claim's token");
                Assert.That(row.NextRetryAt, Is.EqualTo(row.CreatedAt + TimeSpan.FromSeconds(10 + LaneStore.LeaseMarginSeconds)), "leased for the timeout and margin");
            }
            var waiting = rows.Single(r => !claimed.ContainsKey(r.Id));
            Assert.That((waiting.AttemptCount, waiting.InFlight, waiting.FirstAttemptAt), Is.EqualTo((0, false, (DateTimeOffset?)null)));
        });

        var first = stored.Claimed[0];
        Assert.That(await stores.HeldByAsync(first.Id), Is.EqualTo(dispatcherId), "claimed for this dispatcher, whose heartbeat covers it");
        var replica = new LaneStore(stores.DataSource, new DispatcherIdentity());
        Assert.That(await replica.ClaimAsync([first.Id], CancellationToken.None), Is.Empty, "a claim at insert is a claim: no second one while it stands");
        // The scheduler could not start it (its lane filled meanwhile): given back, it is claimed as a new delivery is.
        await replica.UnclaimAsync([first.Id], holdHere: true, CancellationToken.None);
        Assert.That(await stores.QueryAsync(db => db.Deliveries.CountAsync(d => d.Id == first.Id && d.InFlight)), Is.EqualTo(1),
            "control: another dispatcher cannot give back this one's claim");
        await stores.Lanes.UnclaimAsync([first.Id], holdHere: true, CancellationToken.None);
        var row = await stores.QueryAsync(db => db.Deliveries.SingleAsync(d => d.Id == first.Id));
        Assert.Multiple(async () =>
        {
            Assert.That((row.AttemptCount, row.InFlight, row.FirstAttemptAt, row.LastAttemptAt),
                Is.EqualTo((0, false, (DateTimeOffset?)null, (DateTimeOffset?)null)), "as made without a claim");
            Assert.That(await stores.HeldByAsync(first.Id), Is.EqualTo(dispatcherId), "held here, where it waits in its lane");
        });
        var again = (await stores.Lanes.ClaimAsync([first.Id], CancellationToken.None)).Single();
        Assert.That(again.AttemptNumber, Is.EqualTo(1), "its first attempt, claimed as a new delivery is");
    }

    [Test]
    public async Task A_record_racing_the_give_back_keeps_every_attempt_row_and_never_allows_more_than_max_attempts()
    {
        await using var stores = await Stores.CreateAsync();
        for (var round = 0; round < 20; round++)
        {
            var id = await stores.AddDeliveryAsync(retryCount: 0);
            var claim = (await stores.Lanes.ClaimAsync([id], CancellationToken.None)).Single();
            await stores.ExpireLeaseAsync(id);

            // Both at once: whichever locks the row first, the answer must count.
            var record = Task.Run(() => stores.Attempts.RecordAsync([Answered(claim, 500, DateTimeOffset.UtcNow)], TimeSpan.Zero,
                CancellationToken.None));
            var giveBack = Task.Run(stores.GiveBackAsync);
            await Task.WhenAll(record, giveBack);
            var again = await stores.Lanes.ClaimAsync([id], CancellationToken.None);

            var delivery = await stores.QueryAsync(db => db.Deliveries.Include(d => d.Attempts).SingleAsync(d => d.Id == id));
            Assert.Multiple(() =>
            {
                Assert.That(again, Is.Empty, $"round {round}: no attempt beyond max_attempts (1)");
                Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Failed), $"round {round}");
                Assert.That(delivery.AttemptCount, Is.EqualTo(1), $"round {round}");
                Assert.That(delivery.Attempts.Select(a => (a.AttemptNumber, a.StatusCode)), Is.EqualTo(new (int, int?)[] { (1, 500) }),
                    $"round {round}: the attempt row is kept");
            });
        }
    }

    [TestCase(100)]
    [TestCase(LaneStore.InlinePayloadBytes + 1)]
    [TestCase(200_000)]
    public async Task The_deliveries_of_one_event_claimed_together_share_one_copy_of_its_exact_bytes(int size)
    {
        await using var stores = await Stores.CreateAsync();
        var eventId = Guid.NewGuid();
        var payload = "{\"id\":\"" + eventId + "\",\"data\":\"" + new string('é', (size - 50) / 2) + "\"}";
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++) ids.Add(await stores.AddDeliveryAsync(eventId, payload));
        var other = await stores.AddDeliveryAsync(Guid.NewGuid(), "{\"other\":true}");

        var claimed = await stores.Lanes.ClaimAsync([.. ids, other], CancellationToken.None);

        var ofEvent = claimed.Where(c => c.EventId == eventId).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(ofEvent, Has.Count.EqualTo(3));
            Assert.That(ofEvent.Select(c => c.Body).Distinct(ReferenceEqualityComparer.Instance).Count(), Is.EqualTo(1), "one array for the event");
            Assert.That(ofEvent[0].Body, Is.EqualTo(System.Text.Encoding.UTF8.GetBytes(payload)), "the stored bytes, exactly");
            Assert.That(claimed.Single(c => c.Id == other).Body, Is.EqualTo("{\"other\":true}"u8.ToArray()), "each event its own body");
        });
    }

    [Test]
    public async Task An_attempt_is_never_stored_as_started_before_its_claim_when_the_clock_offset_is_an_estimate_off_by_a_little()
    {
        await using var stores = await Stores.CreateAsync();
        var id = await stores.AddDeliveryAsync();
        var claim = (await stores.Lanes.ClaimAsync([id], CancellationToken.None)).Single();
        // An offset estimate a little off: moved onto the database's clock with it, the answer came
        // 15 ms after the claim, and the POST, which took 35 ms, seems to have started 20 ms before it.
        var processNow = DateTimeOffset.UtcNow;
        var estimate = claim.ClaimedAt - processNow + TimeSpan.FromMilliseconds(15);
        var attempt = Answered(claim, 200, processNow) with { StartedAt = processNow - TimeSpan.FromMilliseconds(35) };

        await stores.Attempts.RecordAsync([attempt], estimate, CancellationToken.None);

        var delivery = await stores.QueryAsync(db => db.Deliveries.Include(d => d.Attempts).SingleAsync(d => d.Id == id));
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Single().AttemptedAt, Is.EqualTo(delivery.LastAttemptAt).Within(TimeSpan.FromMilliseconds(0.001)),
                "started at its claim, not 20 ms before it");
            Assert.That(delivery.CompletedAt, Is.GreaterThan(delivery.Attempts.Single().AttemptedAt), "completed after it started");
        });
    }

    [TestCase(45.0)]
    [TestCase(-2.0)]
    public async Task A_process_clock_off_by_seconds_stores_the_next_retry_on_the_database_clock(double skewSeconds)
    {
        await using var stores = await Stores.CreateAsync();
        var id = await stores.AddDeliveryAsync();
        var claim = (await stores.Lanes.ClaimAsync([id], CancellationToken.None)).Single();
        // The process's clock is off by skewSeconds; what it learned from its claims says so.
        var skewed = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(skewSeconds);
        var clock = new DatabaseClock(TimeProvider.System);
        clock.Observe(skewed, claim.ClaimedAt);

        // 503 with Retry-After: 30 s, so the retry waits 32 s (the delay queue's level).
        await stores.Attempts.RecordAsync([Answered(claim, 503, skewed, TimeSpan.FromSeconds(30))], clock.Offset, CancellationToken.None);

        // Read with the database's clock: the retry is due 32 s after the answer, whatever the process's clock said.
        var (dueIn, claimedAgo) = await stores.QueryAsync(async db =>
        {
            await using var connection = new NpgsqlConnection(stores.Database.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("""
                SELECT extract(epoch FROM next_retry_at - now())::float8, extract(epoch FROM now() - last_attempt_at)::float8
                FROM webhook_deliveries WHERE id = $1
                """, connection);
            command.Parameters.Add(new() { Value = id });
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            return (reader.GetDouble(0), reader.GetDouble(1));
        });
        Assert.Multiple(() =>
        {
            Assert.That(claimedAgo, Is.GreaterThanOrEqualTo(0), "the claim's time is the database's");
            Assert.That(dueIn, Is.InRange(20.0, 32.0), "due 32 s after the answer on the database's clock, less the time since");
        });
        var early = await stores.Lanes.ClaimAsync([id], CancellationToken.None);
        Assert.That(early, Is.Empty, "not due yet for any replica, whatever its clock");
    }
}
