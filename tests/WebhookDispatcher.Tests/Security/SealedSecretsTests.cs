using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using Notely.WebhookDemo;
using Npgsql;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Delivery;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Security;

/// <summary>
/// Secrets sealed at rest under the main key (<c>Sealing:MainKey</c>): a dump of the table can
/// sign nothing, rows from before sealing keep signing and are sealed at start, the main key
/// rotates without a subscription noticing, and a missing or wrong key stops the service at start.
/// </summary>
public sealed class SealedSecretsTests
{
    private const string Credential = "Bearer gateway-credential-9f8e7d6c5b4a";
    private const string OtherKey = "b3RoZXItbWFpbi1rZXktbm90LXRoZS1vbmUtMzJieXQ="; // 32 bytes, not the run's key
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Test]
    public async Task A_dump_of_the_subscriptions_table_holds_no_secret_private_key_or_credential_in_clear()
    {
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var revealed = new List<string>();
        foreach (var scheme in new[] { "hmac", "ed25519", "both" })
        {
            var created = await (await api.PostJsonAsync("/api/webhooks", $$"""
                {"url": "https://example.com/{{scheme}}", "event_types": ["email.received"], "signature_scheme": "{{scheme}}",
                 "headers": {"Authorization": "{{Credential}}", "X-Api-Key": "key-{{scheme}}-0123456789abcdef"} }
                """)).JsonAsync();
            revealed.Add(created["secret"]!.GetValue<string>());
            var rotated = await (await api.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null)).JsonAsync();
            revealed.Add(rotated["secret"]!.GetValue<string>());
        }

        var dump = await DumpAsync(TestInfrastructure.Postgres, user);

        Assert.That(dump, Has.Count.EqualTo(3));
        Assert.Multiple(() =>
        {
            foreach (var row in dump)
            {
                Assert.That(row, Does.Not.Contain("whsec_"), "no signing secret in clear");
                Assert.That(row, Does.Not.Contain("whsk_"), "no private key in clear");
                Assert.That(row, Does.Not.Contain("gateway-credential"), "no credential header in clear");
                Assert.That(row, Does.Not.Contain("0123456789abcdef"), "no credential header in clear");
                foreach (var secret in revealed) Assert.That(row, Does.Not.Contain(secret["whsec_".Length..]), "not even the secret's base64");
                Assert.That(row, Does.Contain("sealed:v1:"));
            }
        });
    }

    [Test]
    public async Task Plain_text_rows_from_before_sealing_keep_signing_and_are_sealed_at_start()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        await ExecuteAsync(TestInfrastructure.Postgres, """UPDATE webhook_subscriptions SET headers = '{"Authorization": "Bearer plain-before-sealing"}' WHERE id = $1""",
            subscription.Id);
        var secret = subscription.Secret;
        Assert.That(secret, Does.StartWith("whsec_"), "stored in clear, as before sealing");

        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        // What the service does at start (here run by hand: the shared dispatcher started before this row existed).
        var rewritten = await Dispatcher.Services.GetRequiredService<SealingStartup>().RunAsync(CancellationToken.None);
        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True);

        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == subscription.Id));
        Assert.Multiple(() =>
        {
            Assert.That(rewritten, Is.GreaterThanOrEqualTo(1));
            Assert.That(stored.Secret, Does.StartWith(SecretSealer.Prefix));
            Assert.That(stored.Headers, Does.Not.Contain("plain-before-sealing"));
            Assert.That(Dispatcher.Unseal(stored.Secret), Is.EqualTo(secret), "the same secret, sealed");
            foreach (var request in receiver.Requests)
            {
                Assert.That(Signatures.StandardVerifies(request, secret), Is.True, "signed with the same secret before and after");
                Assert.That(Signatures.LegacyVerifies(request, secret), Is.True);
                Assert.That(request.Headers["authorization"], Is.EqualTo("Bearer plain-before-sealing"));
            }
        });
    }

    [Test]
    public async Task Rotating_the_main_key_keeps_every_subscription_signing()
    {
        await using var database = await ScratchDatabase.CreateAsync("mainkey", migrate: true);
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        Dictionary<string, string?> Settings(string mainKey, string? oldKey) => new()
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Sealing:MainKey"] = mainKey,
            ["Sealing:OldMainKeys:0"] = oldKey,
        };

        JsonNode created;
        await using (var before = await IsolatedDispatcher.StartAsync(Settings(TestTokens.SealingKey, null)))
        {
            using var api = before.Client(user);
            created = await (await api.PostJsonAsync("/api/webhooks", $$"""
                {"url": "{{receiver.Url}}", "event_types": ["email.received"], "signature_scheme": "both", "headers": {"Authorization": "{{Credential}}"} }
                """)).JsonAsync();
        }
        // Step 2 of docs/operations.md: the new key is the main key, the old one only opens.
        await using (var during = await IsolatedDispatcher.StartAsync(Settings(OtherKey, TestTokens.SealingKey)))
        {
            await during.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
            Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        }
        var dump = await DumpAsync(database.ConnectionString, user);
        // Step 3: the old key removed.
        await using (var after = await IsolatedDispatcher.StartAsync(Settings(OtherKey, null)))
        {
            await after.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
            Assert.That(await receiver.WaitForAsync(2, Patience), Is.True);
        }

        var newId = SecretSealer.KeyId(Convert.FromBase64String(OtherKey));
        var oldId = SecretSealer.KeyId(Convert.FromBase64String(TestTokens.SealingKey));
        Assert.Multiple(() =>
        {
            Assert.That(dump.Single(), Does.Contain($"sealed:v1:{newId}:"), "sealed again with the new key at start");
            Assert.That(dump.Single(), Does.Not.Contain($"sealed:v1:{oldId}:"), "nothing left under the old key");
            foreach (var request in receiver.Requests)
            {
                Assert.That(Signatures.StandardVerifies(request, created["secret"]!.GetValue<string>()), Is.True);
                Assert.That(WebhookVerifier.VerifyAsymmetric(created["public_key"]!.GetValue<string>(), request.Headers["webhook-id"],
                    request.Headers["webhook-timestamp"], request.Headers["webhook-signature"], request.Body, DateTimeOffset.UtcNow), Is.True);
                Assert.That(request.Headers["authorization"], Is.EqualTo(Credential));
            }
        });
    }

    [Test]
    public async Task A_wrong_main_key_stops_the_service_at_start_with_a_message_naming_the_key_it_needs()
    {
        using var api = TestTokens.Client(Events.NewUser());
        await api.CreateAsync("https://example.com/sealed", ["email.received"]); // at least one sealed row under the run's key

        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Sealing:MainKey"] = OtherKey,
        });
        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
        Assert.That(service.Output, Does.Contain("Sealing").And.Contain("not configured")
            .And.Contain(SecretSealer.KeyId(Convert.FromBase64String(TestTokens.SealingKey))));
    }

    [TestCase("", TestName = "A missing main key stops the service at start")]
    [TestCase("c2hvcnQ=", TestName = "A main key that is not 32 bytes stops the service at start")]
    public async Task A_missing_or_malformed_main_key_stops_the_service(string key)
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Sealing:MainKey"] = key,
        });
        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
        Assert.That(service.Output, Does.Contain("Sealing:MainKey").And.Contain("32"));
    }

    [Test]
    public async Task With_the_database_away_at_start_the_check_waits_for_it_instead_of_stopping_the_start()
    {
        // A port nothing listens on: every connection is refused.
        await using var away = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Username=x;Password=x;Timeout=2");
        var sealer = Dispatcher.Services.GetRequiredService<SecretSealer>();
        var lifetime = Dispatcher.Services.GetRequiredService<Microsoft.Extensions.Hosting.IHostApplicationLifetime>();
        var startup = new SealingStartup(away, sealer, lifetime, Microsoft.Extensions.Logging.Abstractions.NullLogger<SealingStartup>.Instance);

        Assert.DoesNotThrowAsync(() => startup.StartAsync(CancellationToken.None), "the service starts; the check runs again later");
        Assert.ThrowsAsync(Is.InstanceOf<NpgsqlException>(), () => startup.RunAsync(CancellationToken.None), "the check itself needs the database");
        await startup.StopAsync(CancellationToken.None);
    }

    /// <summary>Each subscription row of <paramref name="user"/> as JSON text, every column: what a backup holds.</summary>
    private static async Task<List<string>> DumpAsync(string connectionString, string user)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT row_to_json(s)::text FROM webhook_subscriptions s WHERE user_id = $1", connection);
        command.Parameters.Add(new() { Value = user });
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        return rows;
    }

    private static async Task ExecuteAsync(string connectionString, string sql, Guid id)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new() { Value = id });
        await command.ExecuteNonQueryAsync();
    }
}
