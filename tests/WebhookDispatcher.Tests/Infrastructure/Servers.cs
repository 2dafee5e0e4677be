using Npgsql;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// Takes the run's PostgreSQL and RabbitMQ away and brings them back, as an outage would, for
/// tests that show what the service does meanwhile. Only from <c>[NonParallelizable]</c> tests:
/// every other test loses its servers too. The servers are the ones deploy/infra.sh runs:
/// PostgreSQL through <see cref="PostgresServer"/>, RabbitMQ's application through
/// <c>deploy/infra.sh rabbitmqctl</c> (both set up by deploy/test.sh).
/// </summary>
public static class Servers
{
    private static readonly TimeSpan CommandPatience = TimeSpan.FromSeconds(90);

    /// <summary>Stops PostgreSQL (fast shutdown: open sessions are ended) and waits until it is down (<see cref="PostgresServer"/>).</summary>
    public static Task StopPostgresAsync() => PostgresServer.StopAsync();

    /// <summary>
    /// Starts PostgreSQL if it is not running and waits until it accepts connections. The
    /// dispatchers' own pools are left as the restart left them (full of dead connections): the
    /// service must recover from that by itself. The test's own pools are cleared.
    /// </summary>
    public static async Task StartPostgresAsync()
    {
        await PostgresServer.StartAsync();
        NpgsqlConnection.ClearAllPools();
    }

    /// <summary>Stops RabbitMQ's application (the node stays up; every connection is closed).</summary>
    public static Task StopBrokerAsync() => RunAsync(Repo.Path("deploy/infra.sh"), ["rabbitmqctl", "stop_app"]);

    /// <summary>Starts RabbitMQ's application and waits until it serves.</summary>
    public static async Task StartBrokerAsync()
    {
        await RunAsync(Repo.Path("deploy/infra.sh"), ["rabbitmqctl", "start_app"]);
        await RunAsync(Repo.Path("deploy/infra.sh"), ["rabbitmqctl", "await_startup"]);
    }

    private static async Task RunAsync(string fileName, string[] arguments)
    {
        await using var process = ChildProcess.Start(fileName, arguments, Repo.Root);
        if (!await process.WaitForExitAsync(CommandPatience))
            throw new TimeoutException($"{fileName} {string.Join(' ', arguments)} did not finish:\n{process.Output}");
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{fileName} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{process.Output}");
    }
}
