using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Cluster;

/// <summary>
/// The service on the local cluster of <c>deploy/cluster.sh</c> (<see cref="LocalCluster"/>):
/// three RabbitMQ nodes and a PostgreSQL primary with a streaming standby, connection strings
/// listing every node and host. Each test kills or stops a server and puts the cluster back in
/// order afterwards (the node started again, a new standby made), whatever happened. Not
/// parallel: they share the cluster. Each waits on what it must see (deliveries arriving, rows
/// written), with patience for a busy 2-core machine; the only time bound is the retry's, which
/// the reconciler (switched off here) could not have met.
/// </summary>
[NonParallelizable]
public sealed class ClusterFailoverTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private string _database = "";

    [OneTimeSetUp]
    public async Task CreateDatabaseAsync()
    {
        await LocalCluster.EnsureStartedAsync();
        _database = await LocalCluster.CreateDatabaseAsync("failover");
        // Migrated once, as the release step would; the dispatchers below never migrate.
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(LocalCluster.PostgresFor(_database));
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, dataSource);
        await using var db = new WebhookDbContext(options.Options);
        await db.Database.MigrateAsync();
    }

    [OneTimeTearDown]
    public async Task DropDatabaseAsync()
    {
        if (_database.Length > 0) await LocalCluster.DropDatabaseAsync(_database);
    }

    [SetUp]
    public Task ClusterInOrderAsync() => LocalCluster.EnsureStartedAsync();

    [Test]
    public async Task Publishing_and_delivering_continue_through_the_loss_of_the_queue_leader_node_and_nothing_is_lost()
    {
        const int events = 300;
        var vhost = await LocalCluster.CreateVirtualHostAsync("leader");
        await using var receiver = await TestReceiver.AnsweringAsync(StatusCodes.Status200OK);
        await using var dispatcher = await StartDispatcherAsync(vhost);
        var user = Events.NewUser();
        var subscription = await SubscribeAsync(dispatcher, user, receiver.Url);
        var leader = await LocalCluster.ValueOfAsync("rabbit-leader", DeliveryQueues.FanOut, vhost);

        // A publisher as a Notely service is one: confirmed publishes, one that failed or was not
        // confirmed within 10 s cancelled and published again, as the service's own sends are
        // (the event id makes a repeat harmless; a publish caught by the node's death may
        // otherwise never complete, and only a failed or cancelled one has its channel replaced).
        // Half before the kill, half after.
        var published = new ConcurrentBag<Guid>();
        var republished = 0;
        async Task PublishAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var evt = Events.EmailReceived(user);
                var deadline = DateTime.UtcNow + Patience;
                while (true)
                {
                    try
                    {
                        await MessagingExtensions.SendConfirmedAsync(ct => dispatcher.PublishAsync(evt, ct), CancellationToken.None);
                        break;
                    }
                    catch (Exception) when (DateTime.UtcNow < deadline)
                    {
                        Interlocked.Increment(ref republished);
                        await Task.Delay(100);
                    }
                }
                published.Add(evt.EventId);
                await Task.Delay(10);
            }
        }

        string killed;
        try
        {
            await PublishAsync(events / 2);
            var publishing = PublishAsync(events / 2);
            await Task.Delay(200);
            killed = await LocalCluster.ValueOfAsync("rabbit-kill-leader", DeliveryQueues.FanOut, vhost);
            await publishing;

            var all = await Dispatcher.EventuallyAsync(() => Task.FromResult(DistinctEvents(receiver) >= events), Patience);
            TestContext.Progress.WriteLine($"[cluster] node {killed} (leader of {DeliveryQueues.FanOut}) killed: {DistinctEvents(receiver)} of {events} " +
                                           $"events delivered, {receiver.Requests.Count - DistinctEvents(receiver)} repeated POSTs, {republished} publishes repeated");
            // The broker goes on counting the dead node's consumer of webhook-delivery (a quorum
            // queue keeps it until the node is back); the replica count that splits the limits must
            // not: after a refresh it is still this one dispatcher.
            var topology = dispatcher.Services.GetRequiredService<RabbitMqTopology>();
            var stale = await Dispatcher.EventuallyAsync(async () =>
                await topology.ConsumerCountAsync(DeliveryQueues.Delivery, CancellationToken.None) >= 2, TimeSpan.FromSeconds(30));
            await Task.Delay(ReplicaCounter.RefreshInterval + TimeSpan.FromSeconds(2));
            var replicas = dispatcher.Services.GetRequiredService<DeliveryScheduler>().Replicas;
            // The receiver has them all; their records follow within moments (the recorder batches).
            var deliveries = await DeliveriesAsync(subscription);
            await Dispatcher.EventuallyAsync(async () =>
                (deliveries = await DeliveriesAsync(subscription)).Count(d => d.Status == DeliveryStatus.Success) == events, Patience);
            Assert.Multiple(() =>
            {
                Assert.That(killed, Is.EqualTo(leader), "control: the node that led the fan-out queue was killed");
                Assert.That(stale, Is.True, "control: the broker still counts the dead node's consumer");
                Assert.That(replicas, Is.EqualTo(1), "one replica, whatever the broker counts");
                Assert.That(all, Is.True, "every published event reaches the receiver");
                Assert.That(published.Distinct().Count(), Is.EqualTo(events), "every publish was confirmed in the end");
                Assert.That(deliveries, Has.Count.EqualTo(events));
                Assert.That(deliveries.Select(d => d.Status), Has.All.EqualTo(DeliveryStatus.Success));
            });
        }
        finally
        {
            await LocalCluster.EnsureStartedAsync();
            await dispatcher.DisposeAsync();
            await LocalCluster.DeleteVirtualHostAsync(vhost);
        }
    }

    [Test]
    public async Task A_retry_waiting_in_a_delay_queue_whose_leader_dies_is_still_attempted_on_time()
    {
        const int waitSeconds = 16;
        var vhost = await LocalCluster.CreateVirtualHostAsync("delay");
        // The first attempt asks for a 16 s wait, held by webhook-delivery-delay-16s.
        await using var receiver = await TestReceiver.PerDeliveryAsync((attempt, c) =>
        {
            c.Response.StatusCode = attempt == 1 ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
            if (attempt == 1) c.Response.Headers.RetryAfter = waitSeconds.ToString();
            return Task.CompletedTask;
        });
        // No reconciler to rescue a lost retry: only the delay queue can bring it back.
        await using var dispatcher = await StartDispatcherAsync(vhost, new() { ["Reconciler:GraceSeconds"] = "86400" });
        var user = Events.NewUser();
        var subscription = await SubscribeAsync(dispatcher, user, receiver.Url);
        var delayQueue = RabbitMqTopology.DelayExchangeName(DeliveryQueues.Delivery, TimeSpan.FromSeconds(waitSeconds));
        try
        {
            await dispatcher.PublishAsync(Events.EmailReceived(user));
            Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the first attempt");
            Assert.That(await Dispatcher.EventuallyAsync(async () => await LocalCluster.MessagesAsync(delayQueue, vhost) >= 1, TimeSpan.FromSeconds(30)),
                Is.True, "control: the retry waits in the delay queue");
            var killed = await LocalCluster.ValueOfAsync("rabbit-kill-leader", delayQueue, vhost);
            var killedAt = receiver.Now;

            Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "the retry is attempted");
            var gap = receiver.Requests[1].ArrivedAt - receiver.Requests[0].ArrivedAt;
            TestContext.Progress.WriteLine($"[cluster] node {killed} (leader of {delayQueue}) killed {(killedAt - receiver.Requests[0].ArrivedAt).TotalSeconds:F1} s " +
                                           $"after the first attempt: the retry came {(gap - TimeSpan.FromSeconds(waitSeconds)).TotalSeconds:F1} s late");
            var delivery = (await DeliveriesAsync(subscription)).Single();
            Assert.Multiple(() =>
            {
                Assert.That(gap, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(waitSeconds)), "never early");
                // On time: a lost message would only come back through the reconciler, a day later here.
                Assert.That(gap, Is.LessThan(TimeSpan.FromSeconds(waitSeconds + 30)), "on time, give or take a leader election and a reconnect");
                Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Success));
                Assert.That(delivery.Attempts, Has.Count.EqualTo(2));
            });
        }
        finally
        {
            await LocalCluster.EnsureStartedAsync();
            await dispatcher.DisposeAsync();
            await LocalCluster.DeleteVirtualHostAsync(vhost);
        }
    }

    [Test]
    public async Task After_the_standby_is_promoted_the_API_and_the_dispatcher_write_to_it_without_a_restart()
    {
        var vhost = await LocalCluster.CreateVirtualHostAsync("promote");
        await using var receiver = await TestReceiver.AnsweringAsync(StatusCodes.Status200OK);
        await using var dispatcher = await StartDispatcherAsync(vhost);
        var user = Events.NewUser();
        using var api = dispatcher.Client(user);
        var before = await CreateSubscriptionAsync(api, receiver.Url);
        Assert.That(before, Is.Not.Null, "control: the API writes before the failover");
        await dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "control: delivered before the failover");
        var oldPrimary = await LocalCluster.ValueOfAsync("pg-primary");
        try
        {
            // The primary gone, the standby not yet promoted: the API refuses with 503 and
            // Retry-After, and readiness says the database is out (no primary), not a node lost.
            await LocalCluster.MustRunAsync("pg-stop-primary");
            var refused = await api.PostAsJsonAsync("/api/webhooks", NewSubscription(receiver.Url));
            var unready = await Ready(dispatcher);
            await LocalCluster.MustRunAsync("pg-promote");
            var newPrimary = await LocalCluster.ValueOfAsync("pg-primary");

            // The API: 503 (never 500) while it looks for the primary, then 201 from the new one.
            var statuses = new List<HttpStatusCode>();
            Guid? after = null;
            await Dispatcher.EventuallyAsync(async () =>
            {
                var response = await api.PostAsJsonAsync("/api/webhooks", NewSubscription(receiver.Url));
                statuses.Add(response.StatusCode);
                if (response.StatusCode == HttpStatusCode.Created)
                    after = (await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("id").GetGuid();
                return after is not null;
            }, Patience);
            // The dispatcher: an event fanned out to both subscriptions, attempted and recorded on the new primary.
            await dispatcher.PublishAsync(Events.EmailReceived(user));
            var recorded = after is { } id && await Dispatcher.EventuallyAsync(async () =>
                (await DeliveriesAsync(id)).SingleOrDefault()?.Status == DeliveryStatus.Success &&
                (await DeliveriesAsync(before!.Value)).Count(d => d.Status == DeliveryStatus.Success) == 2, Patience);
            // Promoted, the old primary still down: ready, with the database check degraded (a host lost).
            (HttpStatusCode Status, string? Postgres) degraded = default;
            await Dispatcher.EventuallyAsync(async () => (degraded = await Ready(dispatcher)).Status == HttpStatusCode.OK, Patience);
            TestContext.Progress.WriteLine($"[cluster] primary {oldPrimary} stopped: the API answered {(int)refused.StatusCode}, ready " +
                                           $"{(int)unready.Status} ({unready.Postgres}); {newPrimary} promoted: the API answered " +
                                           $"{string.Join(", ", statuses.Select(s => (int)s))}, ready {(int)degraded.Status} ({degraded.Postgres}); " +
                                           $"the dispatcher recorded on the new primary: {recorded}");
            Assert.Multiple(() =>
            {
                Assert.That(newPrimary, Is.Not.EqualTo(oldPrimary), "control: the standby is the primary now");
                Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "no primary: 503");
                Assert.That(refused.Headers.RetryAfter, Is.Not.Null, "with Retry-After");
                Assert.That(unready, Is.EqualTo((HttpStatusCode.ServiceUnavailable, "Unhealthy")), "no primary: not ready");
                Assert.That(degraded, Is.EqualTo((HttpStatusCode.OK, "Degraded")), "a primary and a host gone: ready, degraded");
                Assert.That(after, Is.Not.Null, "the API writes to the new primary");
                Assert.That(statuses, Has.None.EqualTo(HttpStatusCode.InternalServerError), "never a 500 meanwhile");
                Assert.That(recorded, Is.True, "the dispatcher fans out, attempts and records on the new primary");
                Assert.That(receiver.Requests, Has.Count.GreaterThanOrEqualTo(3));
            });
        }
        finally
        {
            await LocalCluster.RunAsync("pg-rebuild-standby");
            await dispatcher.DisposeAsync();
            await LocalCluster.DeleteVirtualHostAsync(vhost);
        }
    }

    /// <summary>A dispatcher (production settings) on the cluster: every node and host listed, this test's virtual host.</summary>
    private async Task<IsolatedDispatcher> StartDispatcherAsync(string vhost, Dictionary<string, string?>? settings = null)
    {
        var all = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = LocalCluster.PostgresFor(_database),
            ["ConnectionStrings:RabbitMq"] = LocalCluster.RabbitMqFor(vhost),
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Reconciler:IntervalSeconds"] = "1",
        };
        foreach (var (key, value) in settings ?? []) all[key] = value;
        return await IsolatedDispatcher.StartAsync(all, virtualHost: vhost);
    }

    private static async Task<Guid> SubscribeAsync(IsolatedDispatcher dispatcher, string userId, string url)
    {
        var subscription = new WebhookSubscription
        {
            Id = Guid.NewGuid(),
            UserId = userId,
            Url = url,
            EventTypes = ["email.received"],
            Secret = WebhookSigner.NewSecret(),
            RetryCount = 3,
            TimeoutSeconds = 10,
            IsActive = true,
        };
        await using var scope = dispatcher.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<WebhookDbContext>();
        db.Subscriptions.Add(subscription);
        await db.SaveChangesAsync();
        return subscription.Id;
    }

    /// <summary><c>/health/ready</c>: its status code and the <c>postgres</c> check's status.</summary>
    private static async Task<(HttpStatusCode Status, string? Postgres)> Ready(IsolatedDispatcher dispatcher)
    {
        using var client = dispatcher.Client(null);
        var response = await client.GetAsync("/health/ready");
        var body = await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>();
        return (response.StatusCode, body.GetProperty("checks").GetProperty("postgres").GetString());
    }

    private static object NewSubscription(string url) => new { url, event_types = new[] { "email.received" } };

    private static async Task<Guid?> CreateSubscriptionAsync(HttpClient api, string url)
    {
        var response = await api.PostAsJsonAsync("/api/webhooks", NewSubscription(url));
        return response.StatusCode == HttpStatusCode.Created
            ? (await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("id").GetGuid()
            : null;
    }

    private async Task<List<WebhookDelivery>> DeliveriesAsync(Guid subscriptionId)
    {
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(LocalCluster.PostgresFor(_database));
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, dataSource);
        await using var db = new WebhookDbContext(options.Options);
        return await db.Deliveries.AsNoTracking().Include(d => d.Attempts).Where(d => d.SubscriptionId == subscriptionId).ToListAsync();
    }

    private static int DistinctEvents(TestReceiver receiver) =>
        receiver.Requests.Select(r => r.Headers.GetValueOrDefault("webhook-id")).Distinct().Count();
}
