using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// A fan-out statement that stalls (here: blocked by a lock on its tenant's subscription, as a
/// tenant's largest events or thousands of subscriptions would keep it busy) does not hold up
/// another tenant's events: they go into a statement of their own beside it. Events of a user
/// with many subscriptions are stored apart from the start (<see cref="FanOutSizes"/>).
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class FanOutStallTests
{
    [Test]
    public async Task Another_tenants_event_is_delivered_while_a_fan_out_statement_waits()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        });
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var stalled = Events.NewUser();
        var other = Events.NewUser();
        var stalledSubscription = await Dispatcher.SubscribeAsync(stalled, receiver.Url + "/stalled", ["email.received"]);
        await Dispatcher.SubscribeAsync(other, receiver.Url + "/other", ["email.received"]);

        // The fan-out's insert takes a key-share lock on the subscription row; an update lock held
        // here makes it wait until this transaction ends.
        await using var connection = new NpgsqlConnection(TestInfrastructure.Postgres);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM webhook_subscriptions WHERE id = $1 FOR UPDATE", connection, transaction))
        {
            lockRow.Parameters.Add(new() { Value = stalledSubscription.Id });
            await lockRow.ExecuteScalarAsync();
        }
        await dispatcher.PublishAsync(Events.EmailReceived(stalled));
        Assert.That(await Dispatcher.EventuallyAsync(async () => await WaitingInsertsAsync() > 0, TimeSpan.FromSeconds(30)), Is.True,
            "control: the stalled tenant's fan-out statement waits for the lock");

        await dispatcher.PublishAsync(Events.EmailReceived(other));

        // Well inside the 30 s command timeout that would end the stalled statement and free a
        // loop that waits for it: a delivery takes well under a second here, even on a busy machine.
        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(15), "/other"), Is.True, "the other tenant's event was delivered meanwhile");
        Assert.That(await WaitingInsertsAsync(), Is.GreaterThan(0), "control: the stalled statement still waits");
        Assert.That(receiver.To("/stalled"), Is.Empty, "control: the stalled one is not delivered");
        await transaction.RollbackAsync();
        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30), "/stalled"), Is.True, "and is delivered once the lock is gone");
    }

    [Test]
    public async Task Events_of_a_user_with_many_subscriptions_are_stored_apart_from_other_users_events()
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
        });
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var many = Events.NewUser();
        var other = Events.NewUser();
        var manySubscriptions = new List<Guid>();
        for (var i = 0; i < FanOutSizes.ManySubscriptions; i++)
            manySubscriptions.Add((await Dispatcher.SubscribeAsync(many, receiver.Url + "/many", ["email.received"])).Id);
        await Dispatcher.SubscribeAsync(other, receiver.Url + "/other", ["email.received"]);

        // One of the user's subscription rows locked: a statement that inserts that user's
        // deliveries waits, and so would every other event sharing its statement.
        await using var connection = new NpgsqlConnection(TestInfrastructure.Postgres);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM webhook_subscriptions WHERE id = $1 FOR UPDATE", connection, transaction))
        {
            lockRow.Parameters.Add(new() { Value = manySubscriptions[0] });
            await lockRow.ExecuteScalarAsync();
        }
        // Interleaved and all at once, so the fan-out gathers both users' events into the same batches.
        const int ManyEvents = 3, OtherEvents = 10;
        var publishers = Enumerable.Range(0, ManyEvents + OtherEvents).Select(i => i % 4 == 0 && i / 4 < ManyEvents ? many : other);
        await Task.WhenAll(publishers.Select(user => dispatcher.PublishAsync(Events.EmailReceived(user))));

        Assert.That(await receiver.WaitForAsync(OtherEvents, TimeSpan.FromSeconds(15), "/other"), Is.True,
            "every event of the other user was delivered while the statement of the user with many subscriptions waits");
        Assert.That(await WaitingInsertsAsync(), Is.GreaterThan(0), "control: that statement still waits");
        Assert.That(receiver.To("/many"), Is.Empty, "control: nothing of the user with many subscriptions was delivered");
        await transaction.RollbackAsync();
        Assert.That(await receiver.WaitForAsync(ManyEvents * FanOutSizes.ManySubscriptions, TimeSpan.FromSeconds(60), "/many"), Is.True,
            "and all of theirs are delivered once the lock is gone");
    }

    private static async Task<long> WaitingInsertsAsync()
    {
        await using var connection = new NpgsqlConnection(TestInfrastructure.Postgres);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO webhook_deliveries%'
            """, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
