using System.Net;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using WebhookDispatcher.Tests.Delivery;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>Secret rotation: the grace period ends, and concurrent rotations cannot both win.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class SecretRotationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Test]
    public async Task After_the_grace_period_the_old_secret_no_longer_signs()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"]);
        var oldSecret = created["secret"]!.GetValue<string>();
        var newSecret = (await (await client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null)).JsonAsync())["secret"]!.GetValue<string>();

        // Inside the grace period (24 h): both secrets sign.
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        // The grace period ends: what the clock would do in 24 h, done to the row.
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(s => s.Id == created.Id())
            .ExecuteUpdateAsync(u => u.SetProperty(s => s.PreviousSecretExpiresAt, DateTimeOffset.UtcNow.AddSeconds(-1))));
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True);
        var test = await (await client.PostAsync($"/api/webhooks/{created.Id()}/test", null)).JsonAsync();

        var (during, after, testCall) = (receiver.Requests[0], receiver.Requests[1], receiver.Requests[2]);
        Assert.Multiple(() =>
        {
            Assert.That(during.Headers["webhook-signature"].Split(' '), Has.Length.EqualTo(2));
            Assert.That(Signatures.StandardVerifies(during, oldSecret), Is.True, "during the grace period the old secret signs");
            Assert.That(Signatures.StandardVerifies(during, newSecret), Is.True);

            Assert.That(after.Headers["webhook-signature"].Split(' '), Has.Length.EqualTo(1));
            Assert.That(Signatures.StandardVerifies(after, newSecret), Is.True);
            Assert.That(Signatures.StandardVerifies(after, oldSecret), Is.False, "after the grace period the old secret does not sign");
            Assert.That(Signatures.LegacyVerifies(after, newSecret), Is.True);
            Assert.That(Signatures.LegacyVerifies(after, oldSecret), Is.False);

            Assert.That(test["success"]!.GetValue<bool>(), Is.True);
            Assert.That(testCall.Headers["webhook-signature"].Split(' '), Has.Length.EqualTo(1));
            Assert.That(Signatures.StandardVerifies(testCall, newSecret), Is.True);
            Assert.That(Signatures.StandardVerifies(testCall, oldSecret), Is.False);
        });
    }

    [Test]
    public async Task Of_two_simultaneous_rotations_exactly_one_wins_and_the_other_gets_409()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync("https://hooks.example.com/rotate", ["task.created"]);
        var original = created["secret"]!.GetValue<string>();

        // Hold the subscription's row so both rotations read the same secret and then queue on the
        // write; released, they run one after the other, which is the race at its tightest.
        await using var holder = new NpgsqlConnection(TestInfrastructure.Postgres);
        await holder.OpenAsync();
        await using var tx = await holder.BeginTransactionAsync();
        await using (var hold = new NpgsqlCommand("SELECT 1 FROM webhook_subscriptions WHERE id = $1 FOR UPDATE", holder, tx)
                     { Parameters = { new() { Value = created.Id() } } })
            await hold.ExecuteScalarAsync();
        var first = client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null);
        var second = client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null);
        Assert.That(await Dispatcher.EventuallyAsync(async () => await RotationsWaitingAsync() >= 2, Patience), Is.True,
            "both rotations reached the write and wait for the row");
        await tx.CommitAsync();

        var answers = await Task.WhenAll(first, second);

        var statuses = answers.Select(a => a.StatusCode).ToList();
        Assert.That(statuses, Is.EquivalentTo(new[] { HttpStatusCode.OK, HttpStatusCode.Conflict }));
        var winner = await answers.Single(a => a.StatusCode == HttpStatusCode.OK).JsonAsync();
        var loser = answers.Single(a => a.StatusCode == HttpStatusCode.Conflict);
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == created.Id()));
        Assert.Multiple(async () =>
        {
            Assert.That(Dispatcher.Unseal(stored.Secret), Is.EqualTo(winner["secret"]!.GetValue<string>()));
            Assert.That(Dispatcher.Unseal(stored.PreviousSecret), Is.EqualTo(original), "the loser did not push the original secret out");
            Assert.That(loser.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That((await loser.JsonAsync())["secret"], Is.Null);
        });
    }

    /// <summary>Rotation statements of this database waiting for a row lock.</summary>
    private static async Task<long> RotationsWaitingAsync()
    {
        await using var connection = new NpgsqlConnection(TestInfrastructure.Postgres);
        await connection.OpenAsync();
        await using var query = new NpgsqlCommand("""
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query ILIKE 'UPDATE%webhook_subscriptions%' AND query ILIKE '%previous_secret%'
            """, connection);
        return (long)(await query.ExecuteScalarAsync())!;
    }
}
