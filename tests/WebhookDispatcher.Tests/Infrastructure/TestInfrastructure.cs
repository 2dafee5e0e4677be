using DotNet.Testcontainers.Configurations;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

using WebhookDispatcher.Tests.Infrastructure;

// In the root namespace: a SetUpFixture serves the tests of its namespace and those below it.
namespace WebhookDispatcher.Tests;

/// <summary>
/// Finds PostgreSQL and RabbitMQ once per run: the connection strings in
/// <c>ConnectionStrings__Postgres</c> and <c>ConnectionStrings__RabbitMq</c> (what deploy/test.sh
/// exports after starting private servers), else Testcontainers when a Docker engine is reachable,
/// else the run fails — it never skips.
/// </summary>
[SetUpFixture]
public sealed class TestInfrastructure
{
    private RabbitMqContainer? _rabbit;

    /// <summary>The PostgreSQL container when Testcontainers provides the server; null for a local server.</summary>
    internal static PostgreSqlContainer? PostgresContainer { get; private set; }

    /// <summary>Connection string of the test database.</summary>
    public static string Postgres { get; private set; } = "";

    /// <summary>amqp:// URI of the test broker (its own virtual host).</summary>
    public static string RabbitMq { get; private set; } = "";

    /// <summary>
    /// Base URL of the broker's management HTTP API (<c>WEBHOOKS_RABBIT_MGMT_URL</c>, or the
    /// container's), for tests that need a virtual host of their own; empty when unknown.
    /// </summary>
    public static string RabbitManagement { get; private set; } = "";

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        var postgres = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres");
        var rabbit = Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq");
        if (!string.IsNullOrEmpty(postgres) && !string.IsNullOrEmpty(rabbit))
        {
            (Postgres, RabbitMq) = (postgres, rabbit);
            RabbitManagement = Environment.GetEnvironmentVariable("WEBHOOKS_RABBIT_MGMT_URL") ?? "";
        }
        else if (TestcontainersSettings.OS.DockerEndpointAuthConfig is not null)
        {
            PostgresContainer = new PostgreSqlBuilder("postgres:15").Build();
            _rabbit = new RabbitMqBuilder("rabbitmq:3.13-management").WithPortBinding(15672, true).Build();
            await Task.WhenAll(PostgresContainer.StartAsync(), _rabbit.StartAsync());
            (Postgres, RabbitMq) = (PostgresContainer.GetConnectionString(), _rabbit.GetConnectionString());
            RabbitManagement = $"http://{_rabbit.Hostname}:{_rabbit.GetMappedPublicPort(15672)}";
        }
        else
        {
            Assert.Fail("No PostgreSQL/RabbitMQ for the integration tests: set ConnectionStrings__Postgres and " +
                        "ConnectionStrings__RabbitMq (deploy/test.sh does), or make a Docker engine reachable for Testcontainers.");
        }
        await Dispatcher.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await Dispatcher.StopAsync();
        if (PostgresContainer is not null) await PostgresContainer.DisposeAsync();
        if (_rabbit is not null) await _rabbit.DisposeAsync();
    }
}
