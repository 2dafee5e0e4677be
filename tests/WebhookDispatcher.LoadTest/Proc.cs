namespace WebhookDispatcher.LoadTest;

/// <summary>CPU time and memory of processes and of the whole machine, read from Linux's /proc.</summary>
internal static class Proc
{
    /// <summary>Clock ticks per second of /proc's CPU counters (USER_HZ, 100 on Linux).</summary>
    private const double TicksPerSecond = 100;

    /// <summary>User + system CPU seconds a process has used, 0 when it is gone.</summary>
    public static double CpuSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // After the command: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
            return (long.Parse(fields[11]) + long.Parse(fields[12])) / TicksPerSecond;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Busy CPU seconds of the whole machine (all cores): everything but idle and iowait.</summary>
    public static double MachineBusySeconds()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
        var total = cpu.Take(8).Sum();
        return (total - cpu[3] - cpu[4]) / TicksPerSecond;
    }

    /// <summary>Resident set size in bytes (VmRSS), 0 when the process is gone.</summary>
    public static long RssBytes(int pid) => StatusKb(pid, "VmRSS:") * 1024;

    private static long StatusKb(int pid, string key)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line[key.Length..].Trim().Split(' ')[0]);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Processes whose command name (comm) is <paramref name="comm"/>.</summary>
    public static IEnumerable<int> PidsNamed(string comm)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string name;
            try { name = File.ReadAllText(Path.Combine(dir, "comm")).Trim(); }
            catch (IOException) { continue; }
            if (name == comm) yield return pid;
        }
    }

    /// <summary>Processes whose parent is <paramref name="parent"/>.</summary>
    private static IEnumerable<int> ChildrenOf(int parent)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; }
            // After the command: state, then the parent's pid.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (int.TryParse(fields[1], out var ppid) && ppid == parent) yield return pid;
        }
    }

    /// <summary>
    /// The processes of this run's servers, those of deploy/infra.sh in <c>WEBHOOKS_INFRA_DIR</c>:
    /// the postmaster (from its <c>postmaster.pid</c>) with its backends, and RabbitMQ's
    /// <c>beam.smp</c> (<c>rabbit.pid</c>). Other servers on a shared machine are not counted.
    /// Without those files: every process named <c>postgres</c> or <c>beam.smp</c>.
    /// </summary>
    private static (IReadOnlyList<int> Postgres, IReadOnlyList<int> Rabbit) Servers()
    {
        var dir = Environment.GetEnvironmentVariable("WEBHOOKS_INFRA_DIR") is { Length: > 0 } d ? d : "/tmp/webhook-dispatcher-infra";
        static int? PidIn(string file)
        {
            try { return int.TryParse(File.ReadLines(file).FirstOrDefault()?.Trim(), out var pid) ? pid : null; }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }
        IReadOnlyList<int> postgres = PidIn(Path.Combine(dir, "pg", "data", "postmaster.pid")) is { } postmaster
            ? [postmaster, .. ChildrenOf(postmaster)]
            : PidsNamed("postgres").ToList();
        IReadOnlyList<int> rabbit = PidIn(Path.Combine(dir, "rabbitmq", "rabbit.pid")) is { } beam ? [beam] : PidsNamed("beam.smp").ToList();
        return (postgres, rabbit);
    }

    /// <summary>CPU seconds used so far by each group of processes the report names.</summary>
    public static Dictionary<string, double> Snapshot(IReadOnlyList<int> dispatchers)
    {
        var (postgres, rabbit) = Servers();
        return new()
        {
            ["dispatcher"] = dispatchers.Sum(CpuSeconds),
            ["load generator + receiver"] = CpuSeconds(Environment.ProcessId),
            ["postgresql"] = postgres.Sum(CpuSeconds),
            ["rabbitmq"] = rabbit.Sum(CpuSeconds),
            ["machine"] = MachineBusySeconds(),
        };
    }
}
