using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Notely.Events;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Per-key order (decision 0014) through a dispatcher killed mid-attempt: a real process killed
/// (SIGKILL) while the head of a key is in flight, and a second replica on the same database that
/// takes over through its reconciler. Its own database, so no other test's deliveries are reconciled.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class OrderingRecoveryTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    [Test]
    public async Task Per_key_order_holds_when_the_dispatcher_is_killed_during_the_heads_attempt()
    {
        await using var database = await ScratchDatabase.CreateAsync("ordering", migrate: true);
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(database.ConnectionString);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = Guid.Empty;
        var firstAttempts = 0;
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            // The killed dispatcher's attempt gets no answer; the survivor's does.
            if (OrderingTests.EventOf(c) == first && Interlocked.Increment(ref firstAttempts) == 1) await never.Task.WaitAsync(c.RequestAborted);
            c.Response.StatusCode = 200;
        });
        var user = Events.NewUser();
        var subscription = await SubscribeAsync(dataSource, user, receiver.Url);
        var events = Enumerable.Range(0, 3).Select(i => OrderingTests.TaskUpdated(user, "task-k", i)).ToList();
        first = events[0].EventId;
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Reconciler:IntervalSeconds"] = "3600",
        };

        try
        {
            await using (var killed = await ServiceProcess.StartAsync(settings))
            {
                Assert.That(await killed.WaitUntilServingAsync(Patience), Is.Not.Null, killed.Output);
                foreach (var evt in events)
                    Assert.That(await Dispatcher.EventuallyAsync(() => PublishRawAsync(evt, killed.VirtualHost), Patience), Is.True, "published");
                Assert.That(await receiver.WaitForAsync(1, Patience), Is.True, "the head's attempt is in flight");
                // The others are stored behind it before the process dies.
                Assert.That(await Dispatcher.EventuallyAsync(async () => await CountAsync(dataSource, subscription) == 3, Patience), Is.True);
            } // killed: SIGKILL, mid-attempt

            await using var survivor = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
            {
                ["ConnectionStrings:Postgres"] = database.ConnectionString,
                ["Delivery:AllowPrivateNetworks"] = "true",
                ["Reconciler:IntervalSeconds"] = "1",
                ["Reconciler:SettleSeconds"] = "0",
            });
            Assert.That(await receiver.WaitForAsync(4, Patience), Is.True, "the lost attempt is made again and the others follow");
            await Dispatcher.EventuallyAsync(async () => await CountAsync(dataSource, subscription, DeliveryStatus.Success) == 3, Patience);
            Assert.That(receiver.Requests.Select(OrderingTests.EventOf),
                Is.EqualTo(new[] { first, first, events[1].EventId, events[2].EventId }),
                "the head twice (lost, then made again), then the rest in order: none overtook the lost attempt");
        }
        finally
        {
            never.TrySetResult();
        }
    }

    /// <summary>Publishes the event on <paramref name="virtualHost"/> as a raw message; true once the broker routed it.</summary>
    private static Task<bool> PublishRawAsync(TaskUpdated evt, string virtualHost)
    {
        var type = EventCatalog.For<TaskUpdated>();
        return RabbitManagement.PublishAsync(RawEvents.Exchange(type),
            RawEvents.Envelope(type, JsonSerializer.SerializeToNode(evt, EventSchemas.MessageJsonOptions)!), virtualHost: virtualHost);
    }

    private static async Task<Guid> SubscribeAsync(Npgsql.NpgsqlDataSource dataSource, string user, string url)
    {
        await using var db = Context(dataSource);
        var subscription = new WebhookSubscription
        {
            Id = Guid.NewGuid(),
            UserId = user,
            Url = url,
            EventTypes = ["task.updated"],
            Secret = WebhookSigner.NewSecret(),
            TimeoutSeconds = 60,
            Ordering = SubscriptionOrdering.PerKey,
        };
        db.Subscriptions.Add(subscription);
        await db.SaveChangesAsync();
        return subscription.Id;
    }

    private static async Task<int> CountAsync(Npgsql.NpgsqlDataSource dataSource, Guid subscriptionId, string? status = null)
    {
        await using var db = Context(dataSource);
        return await db.Deliveries.CountAsync(d => d.SubscriptionId == subscriptionId && (status == null || d.Status == status));
    }

    internal static WebhookDbContext Context(Npgsql.NpgsqlDataSource dataSource)
    {
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, dataSource);
        return new WebhookDbContext(options.Options);
    }
}
