using System.Text.RegularExpressions;
using Npgsql;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// The local cluster of <c>deploy/cluster.sh</c> (three RabbitMQ nodes, a PostgreSQL primary with a
/// streaming standby), for the failover tests. Used when <c>WEBHOOKS_CLUSTER_DIR</c> is set (with
/// the script's port variables, if not its defaults): the tests start it through the script (a
/// no-op when it runs) and leave it running for whoever set the variable (.ci/run stops it).
/// Without it the failover tests are skipped, and fail under <c>CI=true</c>.
/// </summary>
public static partial class LocalCluster
{
    private static readonly TimeSpan CommandPatience = TimeSpan.FromSeconds(180);

    /// <summary>Whether a cluster is configured for this run.</summary>
    public static bool Configured => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("WEBHOOKS_CLUSTER_DIR"));

    /// <summary>The cluster's PostgreSQL connection string (both hosts, <c>Target Session Attributes=primary</c>), database <c>webhooks</c>.</summary>
    public static string Postgres { get; private set; } = "";

    /// <summary>The cluster's amqp:// URI listing the three nodes, virtual host <c>/</c>.</summary>
    public static string RabbitMq { get; private set; } = "";

    /// <summary>
    /// Starts the cluster through the script (idempotent) and reads its connection strings; skips
    /// the calling test when no cluster is configured, and fails it under <c>CI=true</c>.
    /// </summary>
    public static async Task EnsureStartedAsync()
    {
        if (!Configured)
        {
            if (Environment.GetEnvironmentVariable("CI") == "true")
                Assert.Fail("The failover tests need the local cluster under CI: set WEBHOOKS_CLUSTER_DIR (.ci/run does).");
            Assert.Ignore("No local cluster: set WEBHOOKS_CLUSTER_DIR (and the WEBHOOKS_CLUSTER_* ports) to run the failover tests on deploy/cluster.sh.");
        }
        if (Postgres.Length > 0 && await RunAsync("status") is not null) return;
        var output = await RunAsync("start") ?? throw new InvalidOperationException("deploy/cluster.sh start failed");
        var exports = ExportLine().Matches(output).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        Postgres = exports["ConnectionStrings__Postgres"];
        RabbitMq = exports["ConnectionStrings__RabbitMq"];
    }

    /// <summary>The cluster's PostgreSQL connection string for database <paramref name="database"/>.</summary>
    public static string PostgresFor(string database) => new NpgsqlConnectionStringBuilder(Postgres) { Database = database }.ConnectionString;

    /// <summary>The cluster's amqp:// URI for virtual host <paramref name="vhost"/>.</summary>
    public static string RabbitMqFor(string vhost) => RabbitMq.TrimEnd('/') + "/" + Uri.EscapeDataString(vhost);

    /// <summary>Runs <c>deploy/cluster.sh</c> with <paramref name="arguments"/>; its output, or null when it exited non-zero.</summary>
    public static async Task<string?> RunAsync(params string[] arguments)
    {
        await using var process = ChildProcess.Start(Repo.Path("deploy/cluster.sh"), arguments, Repo.Root);
        if (!await process.WaitForExitAsync(CommandPatience))
            throw new TimeoutException($"deploy/cluster.sh {string.Join(' ', arguments)} did not finish:\n{process.Output}");
        return process.ExitCode == 0 ? process.Output : null;
    }

    /// <summary>Runs <c>deploy/cluster.sh</c> and throws with its output when it fails.</summary>
    public static async Task<string> MustRunAsync(params string[] arguments) =>
        await RunAsync(arguments) ?? throw new InvalidOperationException($"deploy/cluster.sh {string.Join(' ', arguments)} failed");

    /// <summary>Runs <c>deploy/cluster.sh</c> and returns the number it prints (a node, a port), not its log lines.</summary>
    public static async Task<string> ValueOfAsync(params string[] arguments) =>
        (await MustRunAsync(arguments)).Split('\n').Select(l => l.Trim()).Last(l => l.Length > 0 && l.All(char.IsAsciiDigit));

    /// <summary>rabbitmqctl on the first node of <c>1..3</c> that answers.</summary>
    public static async Task<string> RabbitMqCtlAsync(params string[] arguments)
    {
        foreach (var node in new[] { "1", "2", "3" })
            if (await RunAsync(["rabbitmqctl", node, "-q", .. arguments]) is { } output) return output;
        throw new InvalidOperationException($"rabbitmqctl {string.Join(' ', arguments)} failed on every node");
    }

    /// <summary>Creates a virtual host with full rights for guest.</summary>
    public static async Task<string> CreateVirtualHostAsync(string purpose)
    {
        var name = $"webhooks-cluster-{purpose}-{Guid.NewGuid().ToString("N")[..8]}";
        await RabbitMqCtlAsync("add_vhost", name);
        await RabbitMqCtlAsync("set_permissions", "-p", name, "guest", ".*", ".*", ".*");
        return name;
    }

    /// <summary>Deletes a virtual host (best effort).</summary>
    public static async Task DeleteVirtualHostAsync(string name)
    {
        try { await RabbitMqCtlAsync("delete_vhost", name); }
        catch (InvalidOperationException) { /* gone with the cluster */ }
    }

    /// <summary>Messages in <paramref name="queue"/> of <paramref name="vhost"/>, or null when no node reports it.</summary>
    public static async Task<long?> MessagesAsync(string queue, string vhost)
    {
        var output = await RabbitMqCtlAsync("list_queues", "-p", vhost, "name", "messages", "--no-table-headers");
        foreach (var line in output.Split('\n'))
        {
            var parts = line.Split('\t');
            if (parts.Length == 2 && parts[0] == queue && long.TryParse(parts[1], out var n)) return n;
        }
        return null;
    }

    /// <summary>Creates a database on the primary and returns its name.</summary>
    public static async Task<string> CreateDatabaseAsync(string purpose)
    {
        var name = $"webhooks_cluster_{purpose}_{Guid.NewGuid().ToString("N")[..8]}";
        await ExecuteAsync("postgres", $"CREATE DATABASE \"{name}\"");
        return name;
    }

    /// <summary>Drops a database on the primary (best effort).</summary>
    public static async Task DropDatabaseAsync(string name)
    {
        NpgsqlConnection.ClearAllPools();
        try { await ExecuteAsync("postgres", $"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"); }
        catch (NpgsqlException) { /* gone with the cluster */ }
    }

    /// <summary>Runs one statement on the primary's <paramref name="database"/> and returns the first column of the first row.</summary>
    public static async Task<object?> ExecuteAsync(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(PostgresFor(database)) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    [GeneratedRegex("""^export (\w+)="(.*)"$""", RegexOptions.Multiline)]
    private static partial Regex ExportLine();
}
