using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// <c>dotnet WebhookDispatcher.dll topology</c>, run as a release step runs it (a process of its
/// own, the Production environment) on a virtual host where no dispatcher has ever started.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class TopologyCommandTests
{
    private static readonly TimeSpan CommandPatience = TimeSpan.FromSeconds(60);

    [Test]
    public async Task An_event_published_after_the_topology_command_and_before_any_dispatcher_started_is_delivered()
    {
        var vhost = await Broker.CreateVirtualHostAsync("topology");
        try
        {
            await using var receiver = await TestReceiver.AnsweringAsync(200);
            var user = Events.NewUser();
            await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
            var type = EventCatalog.For<EmailReceived>();
            var eventId = Guid.NewGuid();
            Assert.That(await RabbitManagement.CountAsync(DeliveryQueues.FanOut, vhost), Is.Null, "control: a fresh virtual host");

            var (exitCode, output) = await ServiceProcess.RunCommandAsync(["topology"],
                new Dictionary<string, string> { ["ConnectionStrings:RabbitMq"] = RabbitManagement.AmqpUri(vhost) }, CommandPatience);

            Assert.That(exitCode, Is.EqualTo(0), output);
            // As a publisher that starts first would: the broker keeps the event for the dispatcher.
            var routed = await RabbitManagement.PublishAsync(RawEvents.Exchange(type),
                RawEvents.Envelope(type, EventSchemas.ExampleMessage(type, user, eventId)), virtualHost: vhost);
            var waiting = await RabbitManagement.CountAsync(DeliveryQueues.FanOut, vhost);
            var missingDelays = new List<string>();
            foreach (var queue in new[] { DeliveryQueues.FanOut, DeliveryQueues.Delivery })
                foreach (var level in DelayLevels.All)
                    if (await RabbitManagement.QueueArgumentsAsync(RabbitMqTopology.DelayExchangeName(queue, level), vhost) is not { } arguments
                        || arguments["x-message-ttl"]?.GetValue<long>() != (long)level.TotalMilliseconds)
                        missingDelays.Add(RabbitMqTopology.DelayExchangeName(queue, level));
            Assert.Multiple(async () =>
            {
                Assert.That(routed, Is.True, "the event exchange exists and is bound to a queue");
                Assert.That(waiting, Is.EqualTo(((uint, uint)?)(1u, 0u)), "the event waits in webhook-fan-out; the command consumed nothing");
                Assert.That(await RabbitManagement.CountAsync(DeliveryQueues.Delivery, vhost), Is.Not.Null, "webhook-delivery declared");
                Assert.That(missingDelays, Is.Empty, "every delay queue of both endpoints declared with its TTL");
                Assert.That(receiver.Requests, Is.Empty);
            });

            await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
            {
                ["Delivery:AllowPrivateNetworks"] = "true",
            }, virtualHost: vhost);

            Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True, "the event kept by the broker is delivered");
            Assert.That(JsonNode.Parse(receiver.Requests[0].Body)!["id"]!.GetValue<Guid>(), Is.EqualTo(eventId));

            // Run again while the dispatcher consumes (a later release, or a repair): nothing changes for it.
            var again = await ServiceProcess.RunCommandAsync(["topology"],
                new Dictionary<string, string> { ["ConnectionStrings:RabbitMq"] = RabbitManagement.AmqpUri(vhost) }, CommandPatience);
            await dispatcher.PublishAsync(Events.EmailReceived(user));
            Assert.Multiple(async () =>
            {
                Assert.That(again.ExitCode, Is.EqualTo(0), again.Output);
                Assert.That(await receiver.WaitForAsync(2, TimeSpan.FromSeconds(30)), Is.True, "the next event is delivered as before");
                Assert.That((await RabbitManagement.CountAsync(DeliveryQueues.FanOut, vhost))?.Consumers, Is.EqualTo(1), "still consumed");
            });
        }
        finally
        {
            await Broker.DeleteVirtualHostAsync(vhost);
        }
    }

    [Test]
    public async Task A_service_started_with_the_topology_only_setting_left_on_refuses_to_start()
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Messaging:DeployTopologyOnly"] = "true",
        });

        var exitCode = await service.WaitForExitAsync(CommandPatience);

        Assert.That(exitCode, Is.Not.Null, $"the service is still running:\n{service.Output}");
        Assert.That(exitCode, Is.Not.Zero);
        Assert.That(service.Output, Does.Contain("Messaging:DeployTopologyOnly is on: it is for the 'topology' command only"));
    }

    [Test]
    public async Task The_topology_command_exits_non_zero_with_a_clear_message_when_the_broker_is_unreachable()
    {
        var port = PortNothingListensOn(); // RabbitMQ's host is down

        var (exitCode, output) = await ServiceProcess.RunCommandAsync(["topology"],
            new Dictionary<string, string> { ["ConnectionStrings:RabbitMq"] = $"amqp://guest:secret-password@127.0.0.1:{port}/some-vhost" },
            CommandPatience);

        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.EqualTo(1), output);
            Assert.That(output, Does.Contain($"topology: could not declare the delay queues on RabbitMQ at 127.0.0.1:{port} (virtual host some-vhost)"));
            Assert.That(output, Does.Contain("Connection refused"), "the reason");
            Assert.That(output, Does.Not.Contain("secret-password"), "credentials stay out of the output");
        });
    }

    [Test]
    public async Task The_migrate_command_migrates_a_new_database_without_an_error_line_and_a_second_run_changes_nothing()
    {
        await using var database = await ScratchDatabase.CreateAsync("migrate", migrate: false);
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Sealing:MainKey"] = TestTokens.SealingKey,
        };

        var (firstExit, first) = await ServiceProcess.RunCommandAsync(["migrate"], settings, CommandPatience);
        var (secondExit, second) = await ServiceProcess.RunCommandAsync(["migrate"], settings, CommandPatience);

        Assert.Multiple(() =>
        {
            Assert.That(firstExit, Is.EqualTo(0), first);
            // EF logged its first read of a history table not made yet as "fail: … Failed executing DbCommand".
            Assert.That(first, Does.Not.Contain("fail:").And.Not.Contain("Failed executing"), "an operator reads no error on a run that succeeded");
            Assert.That(secondExit, Is.EqualTo(0), second);
            Assert.That(second, Does.Not.Contain("fail:"));
        });
        await using var connection = new Npgsql.NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var applied = new Npgsql.NpgsqlCommand("SELECT count(*) FROM \"__EFMigrationsHistory\"", connection);
        Assert.That((long)(await applied.ExecuteScalarAsync())!, Is.GreaterThan(15), "every migration applied");
    }

    [Test]
    public async Task The_migrate_command_exits_non_zero_with_a_clear_message_when_the_database_is_unreachable()
    {
        var port = PortNothingListensOn(); // PostgreSQL's host is down

        var (exitCode, output) = await ServiceProcess.RunCommandAsync(["migrate"],
            new Dictionary<string, string>
            {
                ["ConnectionStrings:Postgres"] = $"Host=127.0.0.1;Port={port};Database=webhooks;Username=webhooks;Password=secret-password",
                ["Auth:SigningKey"] = TestTokens.SigningKey,
                ["Sealing:MainKey"] = TestTokens.SealingKey,
            },
            CommandPatience);

        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.EqualTo(1), output);
            Assert.That(output, Does.Contain($"migrate: could not migrate PostgreSQL at 127.0.0.1:{port} (database webhooks)"));
            Assert.That(output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
            Assert.That(output, Does.Not.Contain("secret-password"), "credentials stay out of the output");
        });
    }

    [Test]
    public async Task The_token_command_prints_a_JWT_with_the_scope_asked_for_and_refuses_a_malformed_scope()
    {
        var settings = new Dictionary<string, string> { ["Auth:SigningKey"] = TestTokens.SigningKey, ["Sealing:MainKey"] = TestTokens.SealingKey };

        var (exitCode, output) = await ServiceProcess.RunCommandAsync(["token", "ops-alice", "2", "webhooks:operator"], settings, CommandPatience);
        var (badCode, badOutput) = await ServiceProcess.RunCommandAsync(["token", "ops-alice", "2", "bad\"scope"], settings, CommandPatience);

        var jwt = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Last();
        var claims = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(jwt);
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.EqualTo(0), output);
            Assert.That((claims.Subject, claims.GetClaim("scope").Value), Is.EqualTo(("ops-alice", "webhooks:operator")));
            Assert.That(badCode, Is.EqualTo(2), badOutput);
            Assert.That(badOutput, Does.Contain("usage: token <user-id>"));
        });
    }

    /// <summary>A loopback port nothing listens on (taken from the system and given back at once).</summary>
    private static int PortNothingListensOn()
    {
        using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }
}
