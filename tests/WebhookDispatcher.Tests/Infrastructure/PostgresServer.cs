using Npgsql;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// Stops and starts the run's PostgreSQL server, for tests of a database outage. Only from
/// <c>[NonParallelizable]</c> tests, which must start it again whatever happens
/// (<see cref="OutageAsync"/> does, when disposed).
/// </summary>
/// <remarks>
/// The server of deploy/infra.sh is stopped with <c>pg_ctl -m fast</c> (connections are cut and
/// new ones refused, as in a restart) in <c>$WEBHOOKS_INFRA_DIR/pg/data</c> (deploy/test.sh
/// exports it; default <c>/tmp/webhook-dispatcher-infra</c>), but only after checking that the
/// server there is the one the run's connection string points at: another engineer's server on
/// the same machine is never touched. A Testcontainers server is paused instead (its mapped port
/// would change on a restart).
/// </remarks>
public static class PostgresServer
{
    private const string Binaries = "/usr/lib/postgresql/15/bin";

    private static string DataDirectory => Path.Combine(
        Environment.GetEnvironmentVariable("WEBHOOKS_INFRA_DIR") is { Length: > 0 } dir ? dir : "/tmp/webhook-dispatcher-infra", "pg", "data");

    /// <summary>Stops the server; returns once it refuses connections. Dispose the result to start it again.</summary>
    public static async Task<IAsyncDisposable> OutageAsync()
    {
        await StopAsync();
        return new Restart();
    }

    /// <summary>Stops the server (waits until it is down).</summary>
    public static async Task StopAsync()
    {
        if (TestInfrastructure.PostgresContainer is { } container)
        {
            await container.PauseAsync();
            return;
        }
        CheckIsTheRunsServer();
        if (await PgCtlAsync("-m", "fast", "-w", "stop") is not 0 and var code)
            throw new InvalidOperationException($"pg_ctl stop exited with {code}");
    }

    /// <summary>Starts the server if it is down (waits until it accepts connections).</summary>
    public static async Task StartAsync()
    {
        if (TestInfrastructure.PostgresContainer is { } container)
        {
            if (container.State == DotNet.Testcontainers.Containers.TestcontainersStates.Paused) await container.UnpauseAsync();
            return;
        }
        if (await PgCtlAsync("status") == 0) return;
        // On the run's port, as deploy/infra.sh starts it (its postgresql.conf keeps the port of the first start).
        var port = new NpgsqlConnectionStringBuilder(TestInfrastructure.Postgres).Port;
        if (await PgCtlAsync("-l", Path.GetFullPath(Path.Combine(DataDirectory, "..", "postgres.log")), "-o", $"-p {port}", "-w", "start") is not 0 and var code)
            throw new InvalidOperationException($"pg_ctl start exited with {code}: see {DataDirectory}/../postgres.log");
    }

    /// <summary>
    /// Freezes the server (SIGSTOP to the postmaster and every backend; a paused container): it
    /// still accepts TCP connections and keeps those it has, but answers nothing, as a database
    /// host that hangs or a network that drops packets would. Dispose the result to thaw it.
    /// </summary>
    public static async Task<IAsyncDisposable> FreezeAsync()
    {
        if (TestInfrastructure.PostgresContainer is { } container)
        {
            await container.PauseAsync();
            return new Thaw(null);
        }
        CheckIsTheRunsServer();
        var postmaster = int.Parse(File.ReadLines(Path.Combine(DataDirectory, "postmaster.pid")).First().Trim(), System.Globalization.CultureInfo.InvariantCulture);
        int[] pids = [postmaster, .. ChildrenOf(postmaster)];
        await SignalAsync(pids, "STOP");
        return new Thaw(pids);
    }

    /// <summary>The processes whose parent is <paramref name="pid"/> (from <c>/proc/*/stat</c>).</summary>
    private static IEnumerable<int> ChildrenOf(int pid)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
            if (int.TryParse(Path.GetFileName(dir), out var child) && StatOf(child) is { } fields
                && int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) == pid)
                yield return child;
    }

    /// <summary>The state letter of <paramref name="pid"/> (<c>T</c>: stopped), or a space when it has ended.</summary>
    private static char StateOf(int pid) => StatOf(pid)?[0][0] ?? ' ';

    /// <summary>The fields of <c>/proc/{pid}/stat</c> after the command name (state, ppid, …), or null when the process has ended.</summary>
    private static string[]? StatOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'.
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Sends SIG<paramref name="signal"/> to every one of <paramref name="pids"/> at once (one <c>kill</c>).</summary>
    private static async Task SignalAsync(int[] pids, string signal)
    {
        await using var kill = ChildProcess.Start("kill", [$"-{signal}", .. pids.Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture))], "/");
        // A backend that ended meanwhile makes kill exit 1 and is no matter; the postmaster's state is checked.
        var stopped = signal == "STOP";
        if (!await kill.WaitForExitAsync(TimeSpan.FromSeconds(10)) || (StateOf(pids[0]) == 'T') != stopped)
            throw new InvalidOperationException($"kill -{signal} {pids[0]} …: the postmaster is {(stopped ? "not" : "still")} stopped. {kill.Output}");
    }

    private sealed class Thaw(int[]? pids) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            if (pids is null)
            {
                if (TestInfrastructure.PostgresContainer is { State: DotNet.Testcontainers.Containers.TestcontainersStates.Paused } container)
                    await container.UnpauseAsync();
                return;
            }
            await SignalAsync(pids, "CONT");
        }
    }

    /// <summary>The run's connection string must name the port the server in <see cref="DataDirectory"/> listens on.</summary>
    private static void CheckIsTheRunsServer()
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (!File.Exists(pidFile))
            Assert.Fail($"No running PostgreSQL in {DataDirectory}: set WEBHOOKS_INFRA_DIR to the directory deploy/infra.sh started the run's server in.");
        // postmaster.pid: pid, data directory, start time, port, socket directory, listen address, …
        var lines = File.ReadAllLines(pidFile);
        var expected = new NpgsqlConnectionStringBuilder(TestInfrastructure.Postgres);
        if (lines.Length < 4 || lines[3].Trim() != expected.Port.ToString() || expected.Host is not ("127.0.0.1" or "localhost"))
            Assert.Fail($"The PostgreSQL server in {DataDirectory} (port {lines.ElementAtOrDefault(3)}) is not the run's ({expected.Host}:{expected.Port}); " +
                        "not stopping it. Set WEBHOOKS_INFRA_DIR to the run's infrastructure directory.");
    }

    /// <summary>Runs pg_ctl as the postgres user; returns its exit code (<c>status</c>: 0 running, 3 not running).</summary>
    private static async Task<int> PgCtlAsync(params string[] arguments)
    {
        await using var process = ChildProcess.Start("runuser", ["-u", "postgres", "--", Path.Combine(Binaries, "pg_ctl"), "-D", DataDirectory, .. arguments],
            "/");
        if (!await process.WaitForExitAsync(TimeSpan.FromSeconds(60)))
            throw new InvalidOperationException($"pg_ctl {string.Join(' ', arguments)} did not finish within 60 s: {process.Output}");
        return process.ExitCode;
    }

    private sealed class Restart : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await StartAsync();
    }
}
