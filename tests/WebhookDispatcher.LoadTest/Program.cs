using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MassTransit;
using Notely.Events;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// End-to-end pipeline load test: the dispatcher (Release build, as shipped, Information logging)
/// runs as its own process(es) on the private PostgreSQL and RabbitMQ; this process publishes
/// Notely events with MassTransit and receives the webhooks on a local Kestrel. It reports
/// deliveries/s, publish → receiver latency percentiles, CPU-µs per delivery of the dispatcher
/// and of the whole machine, and the dispatcher's peak working set. See deploy/bench-pipeline.sh.
/// </summary>
internal static class LoadTestEntry
{
    private const string SigningKey = "load-test-signing-key-0123456789-0123456789";

    private static async Task<int> Main(string[] args)
    {
        Stages.Init();
        var options = Options.Parse(args);
        var postgres = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres") ?? throw new InvalidOperationException("ConnectionStrings__Postgres");
        var rabbit = Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings__RabbitMq");

        await using var receiver = new Receiver();
        await receiver.StartAsync();
        var dispatchers = new List<DispatcherProcess>();
        for (var i = 0; i < options.Replicas; i++)
            dispatchers.Add(await DispatcherProcess.StartAsync(options.DispatcherDll, 5181 + i, postgres, rabbit, SigningKey, options.LogDir, i, options.DispatcherEnv));

        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            var uri = new Uri(rabbit);
            var userInfo = uri.UserInfo.Split(':', 2);
            var vhost = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')) is { Length: > 0 } v ? v : "/";
            cfg.Host(uri.Host, (ushort)uri.Port, vhost, h =>
            {
                h.Username(Uri.UnescapeDataString(userInfo[0]));
                h.Password(Uri.UnescapeDataString(userInfo[1]));
            });
        });
        await bus.StartAsync();
        await using var db = Npgsql.NpgsqlDataSource.Create(postgres);
        var run = new Runner(receiver, bus, dispatchers, options, db,
            i => DispatcherProcess.StartAsync(options.DispatcherDll, 5181 + i, postgres, rabbit, SigningKey, options.LogDir, i, options.DispatcherEnv));
        try
        {
            Console.WriteLine($"# Pipeline load test {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {options.Replicas} dispatcher(s), {Environment.ProcessorCount} cores, " +
                              $"{options.Runs} run(s) of each scenario{(options.Quick ? ", quick mode (short runs: a smoke test, not a measurement)" : "")}");
            Console.WriteLine();
            var results = new List<Result>();
            var calibrations = new List<(int Run, CalibrationResult Result)>();
            async Task Scenario(string scenario, int round)
            {
                var result = await run.RunAsync(scenario) with { Run = round };
                results.Add(result);
                Console.WriteLine(result.Row());
                if (options.OutFile is { } file)
                    await File.AppendAllTextAsync(file, JsonSerializer.Serialize(result) + "\n");
                foreach (var stage in run.TakeStageReports())
                {
                    Console.WriteLine();
                    Console.WriteLine($"Stages of {scenario}, run {round}:");
                    Console.WriteLine();
                    Console.WriteLine(stage);
                    Console.WriteLine(Runner.Header);
                }
            }

            Console.WriteLine(Runner.Header);
            // The warm-up prepares the process (JIT, pools, caches) and is no measurement: it runs
            // once, and so do the scenarios listed before it (they see the cold process).
            var once = options.Scenarios.Contains("warmup") ? options.Scenarios[..(Array.IndexOf(options.Scenarios, "warmup") + 1)] : [];
            foreach (var scenario in once)
                await Scenario(scenario, 0);
            for (var round = 1; round <= options.Runs; round++)
            {
                foreach (var name in options.Calibrations)
                {
                    await run.QuietAsync();
                    var c = await Calibration.RunAsync(name, options.CalibrationCount(name), receiver, rabbit, postgres, () => Proc.Snapshot(run.DispatcherPids));
                    calibrations.Add((round, c));
                    Console.WriteLine(Runner.CalibrationRow(round, c));
                    if (options.OutFile is { } file)
                        await File.AppendAllTextAsync(file, JsonSerializer.Serialize(new { Run = round, Calibration = c }) + "\n");
                }
                foreach (var scenario in options.Scenarios.Skip(once.Length))
                    await Scenario(scenario, round);
            }
            Console.WriteLine();
            Console.WriteLine($"duplicates seen by the receiver: {receiver.Duplicates}");
            Console.WriteLine();
            Console.WriteLine(Summary.Write(options, results, calibrations));
            return 0;
        }
        finally
        {
            await bus.StopAsync();
            foreach (var d in dispatchers) await d.DisposeAsync();
        }
    }
}

/// <param name="Scenarios">Scenarios in order; <c>warmup</c> and those before it run once, before the first run of the others.</param>
/// <param name="Events">Events of a throughput scenario (1 → 10: a tenth of them, times ten subscriptions).</param>
/// <param name="Replicas">Dispatcher processes.</param>
/// <param name="DispatcherDll">The dispatcher's Release build.</param>
/// <param name="LogDir">Where the dispatchers' logs go.</param>
/// <param name="OutFile">A JSON-lines file each result is appended to.</param>
/// <param name="Runs">Runs of each scenario and of each calibration (the report gives the median and the range).</param>
/// <param name="Calibrations">Which parts to calibrate in each run (<c>queue</c>, <c>post</c>, <c>rows</c>).</param>
/// <param name="RateSeconds">Length of a fixed-rate scenario (<c>rate100</c>, <c>rate200</c>, <c>rate500</c>).</param>
/// <param name="WarmupSeconds">Length of the warm-up at 500/s.</param>
/// <param name="Quick">Short runs and the quick scenario list: a smoke test of the script.</param>
/// <param name="StagesReport">Print where the latency went, per second, after each fixed-rate scenario.</param>
/// <param name="DispatcherEnv">Extra environment of the dispatcher processes (<c>--dispatcher-env NAME=VALUE</c>, repeatable), e.g. runtime settings to compare.</param>
internal sealed record Options(string[] Scenarios, int Events, int Replicas, string DispatcherDll, string LogDir, string? OutFile,
    int Runs, string[] Calibrations, int RateSeconds, int WarmupSeconds, bool Quick, bool StagesReport, Dictionary<string, string> DispatcherEnv)
{
    public static readonly string[] All =
        ["warmup", "1to1", "1to10", "rate100", "rate200", "rate500", "solo", "slow1", "slow10", "hang10", "retention"];

    public static readonly string[] QuickScenarios = ["warmup", "1to1", "1to10", "rate500"];

    /// <summary>Messages, POSTs or rows of one calibration: enough for a few seconds each on a 2-core machine.</summary>
    public int CalibrationCount(string name) => (name, Quick) switch
    {
        ("rows", false) => 100_000,
        ("rows", true) => 20_000,
        (_, false) => 50_000,
        (_, true) => 10_000,
    };

    public static Options Parse(string[] args)
    {
        string Get(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int Int(string name, int fallback) => int.Parse(Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var quick = args.Contains("--quick");
        var calibrations = Get("--calibrations", string.Join(',', CalibrationResult.All));
        var options = new Options(
            Get("--scenarios", string.Join(',', quick ? QuickScenarios : All)).Split(',', StringSplitOptions.RemoveEmptyEntries),
            Int("--events", quick ? 2000 : 20000),
            Int("--replicas", 1),
            Get("--dispatcher", "services/WebhookDispatcher/bin/Release/net10.0/WebhookDispatcher.dll"),
            Get("--logs", "/tmp"),
            args.Contains("--out") ? Get("--out", "") : null,
            Int("--runs", 3),
            calibrations == "none" ? [] : calibrations.Split(',', StringSplitOptions.RemoveEmptyEntries),
            Int("--rate-seconds", quick ? 8 : 20),
            Int("--warmup-seconds", quick ? 5 : 15),
            quick,
            args.Contains("--stages"),
            args.Select((a, i) => (a, i)).Where(x => x.a == "--dispatcher-env" && x.i + 1 < args.Length)
                .Select(x => args[x.i + 1].Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : ""));
        if (options.Runs < 1) throw new ArgumentException("--runs must be at least 1");
        if (options.RateSeconds < 6) throw new ArgumentException("--rate-seconds must be at least 6 (the first 5 s are reported apart)");
        foreach (var s in options.Scenarios)
            if (!All.Contains(s) && s is not ("first" or "rate500again" or "rate500newhost" or "restart" or "hostile" or "hostileA" or "hostileB" or "hostileA1" or "backlog1" or "ordered" or "batched")) throw new ArgumentException($"unknown scenario {s}");
        foreach (var c in options.Calibrations)
            if (!CalibrationResult.All.Contains(c)) throw new ArgumentException($"unknown calibration {c}");
        return options;
    }
}

/// <param name="P99First5sMs">p99 publish → receiver of the events published in the run's first 5 s (a new subscription's first seconds).</param>
/// <param name="Metrics">Figures of a scenario that the columns do not have (<c>hostile</c>, <c>backlog1</c>), summarised as medians.</param>
internal sealed record Result(
    string Scenario, int Deliveries, double Seconds, double PerSecond, double? P50Ms, double? P99Ms, double? MaxMs,
    double DispatcherUsPerDelivery, double MachineUsPerDelivery, Dictionary<string, double> CpuSeconds, long PeakRssMiB, string Note,
    double? P99First5sMs = null, double? MaxFirst5sMs = null, Dictionary<string, double>? Metrics = null)
{
    /// <summary>Which run of the scenario (0: the warm-up).</summary>
    public int Run { get; init; }

    public string Row() =>
        $"| {Run} | {Scenario} | {Deliveries} | {Seconds:0.0} | {PerSecond:0} | {Ms(P50Ms)} | {Ms(P99Ms)} | {Ms(MaxMs)} | {Ms(P99First5sMs)} / {Ms(MaxFirst5sMs)} | " +
        $"{DispatcherUsPerDelivery:0} | {MachineUsPerDelivery:0} | " +
        $"{CpuSeconds["dispatcher"]:0.0} / {CpuSeconds["postgresql"]:0.0} / {CpuSeconds["rabbitmq"]:0.0} / {CpuSeconds["load generator + receiver"]:0.0} | " +
        $"{PeakRssMiB} | {Note} |";

    private static string Ms(double? v) => v is { } x ? x.ToString("0.0", CultureInfo.InvariantCulture) : "–";
}

internal sealed partial class Runner(Receiver receiver, IBusControl bus, List<DispatcherProcess> dispatchers, Options options, Npgsql.NpgsqlDataSource db,
    Func<int, Task<DispatcherProcess>> startDispatcher)
{
    public const string Header =
        "| run | scenario | deliveries | s | deliveries/s | p50 ms | p99 ms | max ms | first 5 s: p99 / max ms | dispatcher CPU-µs/delivery | machine CPU-µs/delivery | CPU s: dispatcher / postgres / rabbitmq / loadgen | dispatcher peak RSS MiB | note |\n" +
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    private readonly List<string> _stageReports = [];

    /// <summary>The stage tables made since the last call (with <c>--stages</c>).</summary>
    public List<string> TakeStageReports()
    {
        var reports = _stageReports.ToList();
        _stageReports.Clear();
        return reports;
    }

    public static string CalibrationRow(int round, CalibrationResult c) =>
        string.Create(CultureInfo.InvariantCulture,
            $"| {round} | calibration: {c.Name} | {c.Count} | {c.Seconds:0.0} | {c.PerSecond:0} {c.Unit} | | | | | | | – / {c.CpuSeconds["postgresql"]:0.0} / {c.CpuSeconds["rabbitmq"]:0.0} / {c.CpuSeconds["load generator + receiver"]:0.0} | | {c.Describe} |");

    private readonly HttpClient _api = new() { BaseAddress = new Uri(dispatchers[0].Url) };
    private double? _soloPerSecond;
    private (string User, List<string> Paths)? _lastRate;

    public Task<Result> RunAsync(string scenario) => scenario switch
    {
        "warmup" => Warmup(),
        "1to1" => Throughput("1to1", subscriptions: 1, events: options.Events),
        "1to10" => Throughput("1to10", subscriptions: 10, events: options.Events / 10),
        "rate100" => Rate(100, options.RateSeconds),
        "rate200" => Rate(200, options.RateSeconds),
        "rate500" => Rate(500, options.RateSeconds),
        "rate500again" => Rate(500, options.RateSeconds, "rate500again", existing: true),
        "rate500newhost" => Rate(500, options.RateSeconds, "rate500newhost", freshAddress: true),
        "first" => Rate(1, 1, "first"),
        "solo" => Solo(),
        "slow1" => Isolation("slow1", "slow", 1, 2000, timeoutSeconds: 10),
        "slow10" => Isolation("slow10", "slow", 10, 200, timeoutSeconds: 10),
        "hang10" => Isolation("hang10", "hang", 10, 200, timeoutSeconds: 10),
        "retention" => RetentionAsync(),
        "restart" => RestartAsync(),
        "hostile" => HostileAsync(),
        "hostileA" => HostileAsync("hostileA", publishB: false),
        "hostileB" => HostileAsync("hostileB", publishA: false),
        "hostileA1" => HostileAsync("hostileA1", publishB: false, subscriptionsA: 1),
        "backlog1" => Backlog1Async(),
        "ordered" => OrderedAsync(),
        "batched" => BatchedAsync(),
        _ => throw new ArgumentException($"unknown scenario {scenario}"),
    };

    /// <summary>
    /// Stops the dispatchers (killed, as a crash would) and starts them again on the same database:
    /// the scenarios after it see a new process, while the load generator stays warm.
    /// </summary>
    private async Task<Result> RestartAsync()
    {
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < dispatchers.Count; i++)
        {
            await dispatchers[i].DisposeAsync();
            dispatchers[i] = await startDispatcher(i);
        }
        var cpu = Proc.Snapshot(Pids);
        return new Result("restart", 0, Math.Round(watch.Elapsed.TotalSeconds, 2), 0, null, null, null, 0, 0, cpu.ToDictionary(kv => kv.Key, _ => 0.0),
            dispatchers.Max(d => Proc.RssBytes(d.Pid)) / (1024 * 1024), "dispatcher(s) killed and started again (until /health answered)");
    }

    private async Task<Result> Solo()
    {
        var r = await Throughput("solo", subscriptions: 1, events: options.Events);
        _soloPerSecond = r.PerSecond;
        return r;
    }

    private static readonly bool Shaping = Environment.GetEnvironmentVariable("WEBHOOKS_LOAD_SHAPING") == "1";

    private static readonly object ShapingFilter = System.Text.Json.JsonDocument.Parse(
        """{"data.from": {"$prefix": "alice@"}, "data.to[]": {"$in": ["bob@example.com", "carol@example.com"]}, "$not": {"data.subject": {"$contains": "[spam]"}}}""").RootElement;

    /// <summary>A new user, whose token the management API client carries from now on.</summary>
    private string NewUser()
    {
        var user = "load-" + Guid.NewGuid().ToString("N")[..10];
        _api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = "load-test-signing-key-0123456789-0123456789" },
            user, TimeSpan.FromHours(6)));
        return user;
    }

    private async Task<(string User, List<string> Paths)> SubscribeAsync(string kind, int count, int timeoutSeconds = 10, string? baseUrl = null)
    {
        var user = NewUser();
        var paths = new List<string>();
        for (var i = 0; i < count; i++)
        {
            var path = $"/{kind}/{user}-{i}";
            // WEBHOOKS_LOAD_SHAPING=1: every subscription with a filter its events match and the Slack template (issue 19's comparison run).
            using var response = await _api.PostAsJsonAsync("/api/webhooks", Shaping
                ? (object)new { url = (baseUrl ?? receiver.Url) + path, event_types = new[] { "email.received" }, retry_count = 3, timeout_seconds = timeoutSeconds,
                                filter = ShapingFilter, template = new { builtin = "slack" } }
                : new { url = (baseUrl ?? receiver.Url) + path, event_types = new[] { "email.received" }, retry_count = 3, timeout_seconds = timeoutSeconds });
            response.EnsureSuccessStatusCode();
            paths.Add(path);
        }
        return (user, paths);
    }

    private EmailReceived Event(string user)
    {
        var id = Guid.NewGuid();
        receiver.PublishedAt[id] = Stopwatch.GetTimestamp();
        return new EmailReceived
        {
            EventId = id,
            UserId = user,
            OccurredAt = DateTimeOffset.UtcNow,
            EmailId = "em_" + id.ToString("N")[..8],
            Subject = "Quarterly report — draft",
            From = "alice@example.com",
            To = ["bob@example.com"],
            Date = DateTimeOffset.UtcNow,
            BodyPreview = "Hi Bob, attached is the draft of the quarterly report. Numbers are final except for the last week.",
        };
    }

    /// <summary>Publishes with at most 256 publishes awaiting their broker confirm.</summary>
    private async Task PublishAllAsync(IEnumerable<string> users)
    {
        using var window = new SemaphoreSlim(256);
        var pending = new List<Task>();
        foreach (var user in users)
        {
            await window.WaitAsync();
            pending.Add(bus.Publish(Event(user)).ContinueWith(_ => window.Release()));
        }
        await Task.WhenAll(pending);
    }

    private async Task<Result> Throughput(string name, int subscriptions, int events)
    {
        var (user, paths) = await SubscribeAsync("fast", subscriptions);
        await QuietAsync();
        var sampler = RssSampler.Start(dispatchers);
        var cpu0 = Proc.Snapshot(Pids);
        var start = Stopwatch.GetTimestamp();
        await PublishAllAsync(Enumerable.Repeat(user, events));
        var expected = events * subscriptions;
        await WaitForAsync(() => paths.Sum(p => receiver.Stats(p).Unique) >= expected, TimeSpan.FromMinutes(10));
        var end = paths.Max(p => receiver.Stats(p).Last);
        var cpu1 = Proc.Snapshot(Pids);
        return Build(name, paths, start, end, cpu0, cpu1, await sampler.StopAsync(), "");
    }

    /// <summary>
    /// 1,000,000 expired deliveries with 2 attempts each (5 days, 41 to 37 days old), then one
    /// retention pass while 1 → 1 events are delivered at 200/s: the pass's duration, what it
    /// removed, and the latency of the deliveries made meanwhile.
    /// </summary>
    private async Task<Result> RetentionAsync()
    {
        var postgres = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres")!;
        await using var db = Npgsql.NpgsqlDataSource.Create(postgres);
        var (user, _) = await SubscribeAsync("fast", 1);
        var subscription = await HistoryData.SubscriptionOfAsync(db, user);
        await HistoryData.GenerateExpiredAsync(db, subscription, days: 5, perDay: 200_000, today: DateOnly.FromDateTime(DateTime.UtcNow));
        // Let PostgreSQL write out what the generation dirtied, so the pass is measured, not that.
        await HistoryData.SettleAsync(db);
        await QuietAsync();
        var before = await HistoryData.CountExpiredAsync(db, subscription);
        var attemptsBefore = await HistoryData.CountExpiredAttemptsAsync(db, subscription);

        var retention = new WebhookDispatcher.Data.HistoryRetention(db,
            Microsoft.Extensions.Options.Options.Create(new WebhookDispatcher.Data.RetentionOptions()), TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<WebhookDispatcher.Data.HistoryRetention>.Instance);
        var load = Rate(200, 20);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var watch = Stopwatch.StartNew();
        var pass = await retention.RunOnceAsync(CancellationToken.None);
        var seconds = watch.Elapsed.TotalSeconds;
        var left = await HistoryData.CountExpiredAsync(db, subscription);
        var during = await load;
        return during with
        {
            Scenario = "retention",
            Note = string.Create(CultureInfo.InvariantCulture,
                $"one pass removed {before - left:N0} expired deliveries + {attemptsBefore:N0} attempts ({pass.DaysDropped} days dropped) in {seconds:0.00} s, {left} left; latency columns: 1 → 1 at 200/s while it ran"),
        };
    }

    /// <summary>
    /// Brings a freshly started dispatcher to its steady state before anything is measured: a
    /// burst, then 15 s at 500 events/s (5 s in quick mode). Tiered compilation recompiles the hot paths over the
    /// first tens of seconds (profiled: the JIT was 20 % of the dispatcher's CPU in the first 20 s
    /// at 500/s), and the connection pools and PostgreSQL's caches fill.
    /// </summary>
    private async Task<Result> Warmup()
    {
        await Throughput("warmup", subscriptions: 1, events: 2000);
        return await Rate(500, options.WarmupSeconds, "warmup");
    }

    /// <summary>
    /// <paramref name="perSecond"/> events a second for <paramref name="seconds"/> s to a
    /// subscription created just before (so its first seconds are in the run), or, with
    /// <paramref name="existing"/>, to the subscription of the previous fixed-rate run (its lane
    /// and settings already known to the dispatcher): the two differ only in the subscription's age.
    /// </summary>
    private async Task<Result> Rate(int perSecond, int seconds, string? name = null, bool existing = false, bool freshAddress = false)
    {
        var (user, paths) = existing && _lastRate is { } last ? last
            : await SubscribeAsync("fast", 1, baseUrl: freshAddress ? receiver.FreshUrl() : null);
        _lastRate = (user, paths);
        await QuietAsync();
        var offset = receiver.Stats(paths[0]).Unique;
        var events = perSecond * seconds;
        var sampler = RssSampler.Start(dispatchers);
        var cpu0 = Proc.Snapshot(Pids);
        var start = Stopwatch.GetTimestamp();
        var pending = new List<Task>();
        for (var i = 0; i < events; i++)
        {
            var due = start + (long)(i * (double)Stopwatch.Frequency / perSecond);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait);
            var evt = Event(user);
            pending.Add(bus.Publish(evt).ContinueWith(_ => receiver.ConfirmedAt[evt.EventId] = Stopwatch.GetTimestamp(),
                TaskContinuationOptions.ExecuteSynchronously));
        }
        await Task.WhenAll(pending);
        await WaitForAsync(() => receiver.Stats(paths[0]).Unique >= offset + events, TimeSpan.FromMinutes(5));
        var cpu1 = Proc.Snapshot(Pids);
        var result = Build(name ?? $"rate{perSecond}", paths, start, receiver.Stats(paths[0]).Last, cpu0, cpu1, await sampler.StopAsync(),
            $"offered {perSecond}/s for {seconds} s" + (existing ? " to the previous run's subscription" : freshAddress ? " to a receiver port not used before" : ""), offset);
        if (options.StagesReport)
        {
            var subscription = await HistoryData.SubscriptionOfAsync(db, user);
            _stageReports.Add(await Stages.ReportAsync(db, subscription, receiver.Stats(paths[0]).Arrivals(), receiver.ConfirmedAt, start,
                detailSeconds: Math.Min(seconds, 8)));
        }
        return result;
    }

    /// <summary>
    /// A fast subscription beside <paramref name="slowCount"/> slow or hanging ones: the events
    /// are interleaved; the fast one's throughput is compared with a solo run of the same size
    /// made just before, in the same conditions.
    /// </summary>
    private async Task<Result> Isolation(string name, string kind, int slowCount, int eventsPerSlow, int timeoutSeconds)
    {
        await Solo();
        var (fastUser, fastPaths) = await SubscribeAsync("fast", 1);
        var slow = new List<(string User, string Path)>();
        for (var i = 0; i < slowCount; i++)
        {
            var (u, p) = await SubscribeAsync(kind, 1, timeoutSeconds);
            slow.Add((u, p[0]));
        }
        await QuietAsync();
        var fastEvents = options.Events;
        var slowEvents = slowCount * eventsPerSlow;
        var order = new List<string>(fastEvents + slowEvents);
        var every = Math.Max(1, fastEvents / slowEvents);
        for (int f = 0, s = 0; f < fastEvents || s < slowEvents;)
        {
            if (f < fastEvents) { order.Add(fastUser); f++; }
            if (s < slowEvents && (f % every == 0 || f >= fastEvents)) { order.Add(slow[s % slowCount].User); s++; }
        }

        var sampler = RssSampler.Start(dispatchers);
        var cpu0 = Proc.Snapshot(Pids);
        var start = Stopwatch.GetTimestamp();
        await PublishAllAsync(order);
        await WaitForAsync(() => receiver.Stats(fastPaths[0]).Unique >= fastEvents, TimeSpan.FromMinutes(10));
        var end = receiver.Stats(fastPaths[0]).Last;
        var cpu1 = Proc.Snapshot(Pids);
        var result = Build(name, fastPaths, start, end, cpu0, cpu1, await sampler.StopAsync(), "");

        var note = new StringBuilder();
        if (_soloPerSecond is { } solo) note.Append(CultureInfo.InvariantCulture, $"fast = {100 * result.PerSecond / solo:0}% of solo; ");
        var slowArrived = slow.Sum(s => receiver.Stats(s.Path).Unique);
        note.Append(CultureInfo.InvariantCulture, $"{kind}: {slowArrived}/{slowEvents} arrived when the fast one finished");
        if (kind == "slow")
        {
            var waited = Stopwatch.StartNew();
            await WaitForAsync(() => slow.Sum(s => receiver.Stats(s.Path).Unique) >= slowEvents, TimeSpan.FromMinutes(15));
            note.Append(CultureInfo.InvariantCulture,
                $", all {slow.Sum(s => receiver.Stats(s.Path).Unique)}/{slowEvents} {waited.Elapsed.TotalSeconds:0} s later");
        }
        return result with { Note = note.ToString() };
    }

    private Result Build(string name, List<string> paths, long start, long end, Dictionary<string, double> cpu0,
        Dictionary<string, double> cpu1, long peakRss, string note, int earlier = 0)
    {
        var deliveries = paths.Sum(p => receiver.Stats(p).Unique) - earlier;
        var seconds = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        var arrivals = paths.SelectMany(p => receiver.Stats(p).Arrivals()).Where(a => a.PublishedAt >= start).ToArray();
        var latencies = arrivals.Select(a => a.LatencyMs).Order().ToArray();
        var firstSeconds = arrivals.Where(a => Stopwatch.GetElapsedTime(start, a.PublishedAt) < TimeSpan.FromSeconds(5)).Select(a => a.LatencyMs).Order().ToArray();
        double? Percentile(double q) => latencies.Length == 0 ? null : Stats.Percentile(latencies, q);
        var cpu = cpu1.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value - cpu0[kv.Key], 2));
        return new Result(name, deliveries, Math.Round(seconds, 2), Math.Round(deliveries / seconds, 1), Percentile(0.5), Percentile(0.99),
            latencies.Length == 0 ? null : latencies[^1], Math.Round(cpu["dispatcher"] * 1e6 / deliveries), Math.Round(cpu["machine"] * 1e6 / deliveries),
            cpu, peakRss / (1024 * 1024), note,
            firstSeconds.Length == 0 ? null : Stats.Percentile(firstSeconds, 0.99), firstSeconds.Length == 0 ? null : firstSeconds[^1]);
    }

    private IReadOnlyList<int> Pids => dispatchers.Select(d => d.Pid).ToList();

    /// <summary>The dispatchers' process ids.</summary>
    public IReadOnlyList<int> DispatcherPids => Pids;

    /// <summary>Waits until the dispatchers are idle (no receiver traffic, low CPU) so scenarios do not overlap.</summary>
    public async Task QuietAsync()
    {
        for (var i = 0; i < 60; i++)
        {
            var before = Pids.Sum(Proc.CpuSeconds);
            await Task.Delay(1000);
            if (Pids.Sum(Proc.CpuSeconds) - before < 0.05 * dispatchers.Count) return;
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > timeout) throw new TimeoutException("the expected deliveries did not all arrive");
            await Task.Delay(20);
        }
    }
}

/// <summary>Samples the dispatchers' resident set every 200 ms; the peak of the sum is the scenario's working set.</summary>
internal sealed class RssSampler
{
    private readonly CancellationTokenSource _stop = new();
    private Task<long> _task = Task.FromResult(0L);

    public static RssSampler Start(List<DispatcherProcess> dispatchers)
    {
        var sampler = new RssSampler();
        sampler._task = Task.Run(async () =>
        {
            long peak = 0;
            while (!sampler._stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, dispatchers.Max(d => Proc.RssBytes(d.Pid)));
                try { await Task.Delay(200, sampler._stop.Token); } catch (OperationCanceledException) { }
            }
            return peak;
        });
        return sampler;
    }

    public async Task<long> StopAsync()
    {
        await _stop.CancelAsync();
        return await _task;
    }
}

/// <summary>A dispatcher process: the Release build, run as in production with a local signing key and loopback receivers allowed.</summary>
internal sealed class DispatcherProcess : IAsyncDisposable
{
    private readonly Process _process;

    private DispatcherProcess(Process process, string url)
    {
        _process = process;
        Url = url;
    }

    public int Pid => _process.Id;
    public string Url { get; }

    public static async Task<DispatcherProcess> StartAsync(string dll, int port, string postgres, string rabbit, string signingKey,
        string logDir, int index, IReadOnlyDictionary<string, string> extraEnvironment)
    {
        var url = $"http://127.0.0.1:{port}";
        var log = Path.Combine(logDir, $"loadtest-dispatcher-{index}.log");
        var start = new ProcessStartInfo("bash", ["-c", $"exec dotnet \"{Path.GetFullPath(dll)}\" --urls {url} >\"{log}\" 2>&1"]) 
        {
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(Path.GetFullPath(dll)), // the content root: appsettings.json
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["ConnectionStrings__Postgres"] = postgres;
        start.Environment["ConnectionStrings__RabbitMq"] = rabbit;
        start.Environment["Database__MigrateOnStartup"] = "true";
        start.Environment["Delivery__AllowPrivateNetworks"] = "true";
        start.Environment["Auth__SigningKey"] = signingKey;
        start.Environment["Sealing__MainKey"] = "bG9hZC10ZXN0LW1haW4ta2V5LXNlYWxpbmctMzItYnk=";
        foreach (var (name, value) in extraEnvironment)
            start.Environment[name] = value;
        var process = Process.Start(start)!;
        using var http = new HttpClient();
        for (var i = 0; i < 240; i++)
        {
            if (process.HasExited) throw new InvalidOperationException($"dispatcher exited; see {log}");
            try
            {
                if ((await http.GetAsync(url + "/health")).IsSuccessStatusCode) return new DispatcherProcess(process, url);
            }
            catch (HttpRequestException) { }
            await Task.Delay(500);
        }
        throw new TimeoutException($"dispatcher did not start; see {log}");
    }

    /// <summary>Kills the process with SIGKILL, as a crash would, and waits for it to exit.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
