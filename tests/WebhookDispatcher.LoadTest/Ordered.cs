using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Notely.Events;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// The "Must reach" scenarios of issue 17 (docs/benchmarks/ordering-batches.md): <c>ordered</c>,
/// per-key order through random 500s and a dispatcher killed with SIGKILL beside a second replica;
/// <c>batched</c>, the POSTs and the added latency of a subscription with <c>max_events</c> 100.
/// </summary>
internal sealed partial class Runner
{
    /// <summary>Ordering keys (task ids) of the <c>ordered</c> scenario.</summary>
    private const int OrderedKeys = 50;

    /// <summary>Share of the <c>ordered</c> receiver's answers that are 500.</summary>
    private const double OrderedFailureRate = 0.1;

    /// <summary>The batched subscription's <c>max_events</c> and <c>max_wait_ms</c>.</summary>
    private const int BatchMaxEvents = 100, BatchMaxWaitMs = 1000;

    /// <summary>Creates one subscription for a new user with the given request body (its <c>url</c> is set here); returns the user and the path.</summary>
    private async Task<(string User, string Path)> SubscribeWithAsync(string kind, Func<string, object> body)
    {
        var user = NewUser();
        var path = $"/{kind}/{user}";
        using var response = await _api.PostAsJsonAsync("/api/webhooks", body(receiver.Url + path));
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"creating the subscription answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        return (user, path);
    }

    /// <summary>
    /// A <c>per_key</c> subscription to <c>task.updated</c> (retry_count 10) whose receiver answers
    /// 500 to a random tenth of the requests; 10,000 events (2,000 quick) over 50 task ids, each
    /// carrying its sequence number within its task in the title, published in order; when half are
    /// published the first dispatcher is killed with SIGKILL and the second carries on (the first
    /// is started again once every event has arrived, for the scenarios after this one). Counts, per
    /// key, every request that arrived after a request with a higher sequence number (an inversion),
    /// the events never answered 200 (lost), and the events answered 200 more than once.
    /// </summary>
    private async Task<Result> OrderedAsync()
    {
        if (dispatchers.Count < 2) throw new ArgumentException("the ordered scenario needs --replicas 2: one is killed in the middle");
        var events = options.Quick ? 2_000 : 10_000;
        var (user, path) = await SubscribeWithAsync("ordered", url => new
        {
            url, event_types = new[] { "task.updated" }, retry_count = 10, timeout_seconds = 10, ordering = "per_key",
        });
        var log = new ConcurrentQueue<(long Arrived, string Key, int Seq, bool Ok)>();
        var delivered = new ConcurrentDictionary<(string Key, int Seq), long>();
        receiver.Watch(path, (body, arrived) =>
        {
            using var doc = JsonDocument.Parse(body);
            var data = doc.RootElement.GetProperty("data");
            var key = data.GetProperty("task_id").GetString()!;
            var seq = int.Parse(data.GetProperty("title").GetString()!["seq ".Length..], CultureInfo.InvariantCulture);
            var ok = Random.Shared.NextDouble() >= OrderedFailureRate;
            log.Enqueue((arrived, key, seq, ok));
            if (ok) delivered.TryAdd((key, seq), arrived);
            return ok ? 200 : 500;
        });
        await QuietAsync();
        var published = new Dictionary<(string Key, int Seq), long>(events);
        var start = Stopwatch.GetTimestamp();
        long killedAt = 0;
        using (var window = new SemaphoreSlim(256))
        {
            var pending = new List<Task>(events);
            for (var i = 0; i < events; i++)
            {
                if (i == events / 2)
                {
                    await dispatchers[0].KillAsync();
                    killedAt = Stopwatch.GetTimestamp();
                }
                var key = $"task_{i % OrderedKeys:00}";
                var seq = i / OrderedKeys;
                await window.WaitAsync();
                published[(key, seq)] = Stopwatch.GetTimestamp();
                pending.Add(bus.Publish(new TaskUpdated
                {
                    EventId = Guid.NewGuid(), UserId = user, OccurredAt = DateTimeOffset.UtcNow, TaskId = key,
                    Title = $"seq {seq}", ChangedFields = ["title"],
                }).ContinueWith(_ => window.Release()));
            }
            await Task.WhenAll(pending);
        }
        var waitError = "";
        try
        {
            await WaitForAsync(() => delivered.Count >= events, TimeSpan.FromMinutes(options.Quick ? 5 : 15));
        }
        catch (TimeoutException e)
        {
            waitError = "; " + e.Message;
        }
        var end = delivered.IsEmpty ? Stopwatch.GetTimestamp() : delivered.Values.Max();
        dispatchers[0] = await startDispatcher(0);

        var inversions = 0;
        foreach (var key in log.GroupBy(a => a.Key))
        {
            var highest = -1;
            foreach (var a in key.OrderBy(a => a.Arrived))
            {
                if (a.Seq < highest) inversions++;
                highest = Math.Max(highest, a.Seq);
            }
        }
        var latencies = delivered.Select(kv => Stopwatch.GetElapsedTime(published[kv.Key], kv.Value).TotalMilliseconds).Order().ToArray();
        var failed = await CountDeliveriesAsync(user, "failed");
        var seconds = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        var metrics = new Dictionary<string, double>
        {
            ["events"] = events,
            ["inversions (a request after a higher sequence number of its key)"] = inversions,
            ["lost (never answered 200)"] = events - delivered.Count,
            ["deliveries failed for good"] = failed,
            ["requests"] = log.Count,
            ["requests answered 500"] = log.Count(a => !a.Ok),
            ["events answered 200 more than once"] = log.Count(a => a.Ok) - delivered.Count,
            ["events/s (publish start → last event answered 200)"] = Math.Round(events / seconds, 1),
            ["seconds from the kill to the last event answered 200"] = Math.Round(Stopwatch.GetElapsedTime(killedAt, end).TotalSeconds, 1),
        };
        return new Result("ordered", delivered.Count, Math.Round(seconds, 2), Math.Round(delivered.Count / seconds, 1),
            Stats.Percentile(latencies, 0.5), Stats.Percentile(latencies, 0.99), latencies.Length == 0 ? null : latencies[^1], 0, 0,
            new Dictionary<string, double> { ["dispatcher"] = 0, ["postgresql"] = 0, ["rabbitmq"] = 0, ["load generator + receiver"] = 0 }, 0,
            $"per_key, {OrderedKeys} keys, {OrderedFailureRate:P0} answered 500, dispatcher 0 killed with SIGKILL after {events / 2} publishes; " +
            $"{inversions} inversions, {events - delivered.Count} lost{waitError}; latency: publish → first 200 (CPU not measured: a process dies)",
            Metrics: Finite(metrics));
    }

    /// <summary>
    /// A subscription to <c>email.received</c> with <c>batch</c> {max_events 100, max_wait_ms 1000}
    /// beside an unbatched one of another user (the reference): first both at 50 events/s for 20 s
    /// (batches closed by <c>max_wait_ms</c>), then the batched one alone at 1,000 events/s for the
    /// rest of 20,000 events (batches closed by <c>max_events</c>; 4,000 quick). Counts the batched
    /// subscription's POSTs and each event's publish → arrival latency; the added latency is the
    /// batched p99 less the reference's p50 at the same rate.
    /// </summary>
    private async Task<Result> BatchedAsync()
    {
        var total = options.Quick ? 4_000 : 20_000;
        const int slowRate = 50, slowSeconds = 20, fastRate = 1_000;
        var (user, path) = await SubscribeWithAsync("batched", url => new
        {
            url, event_types = new[] { "email.received" }, retry_count = 3, timeout_seconds = 10,
            batch = new { max_events = BatchMaxEvents, max_wait_ms = BatchMaxWaitMs },
        });
        var (referenceUser, referencePaths) = await SubscribeAsync("fast", 1);
        var arrivals = new ConcurrentDictionary<Guid, long>();
        var posts = 0;
        var sizes = new ConcurrentBag<int>();
        receiver.Watch(path, (body, arrived) =>
        {
            using var doc = JsonDocument.Parse(body);
            var batch = doc.RootElement.GetProperty("events");
            Interlocked.Increment(ref posts);
            sizes.Add(batch.GetArrayLength());
            foreach (var e in batch.EnumerateArray())
                arrivals.TryAdd(e.GetProperty("id").GetGuid(), arrived);
            return 200;
        });
        await QuietAsync();
        var slowIds = new List<Guid>();
        var fastIds = new List<Guid>();

        async Task PaceAsync(int perSecond, int count, List<Guid> ids, bool withReference)
        {
            var start = Stopwatch.GetTimestamp();
            var pending = new List<Task>();
            for (var i = 0; i < count; i++)
            {
                var due = start + (long)(i * (double)Stopwatch.Frequency / perSecond);
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait);
                var evt = Event(user);
                ids.Add(evt.EventId);
                pending.Add(bus.Publish(evt));
                if (withReference) pending.Add(bus.Publish(Event(referenceUser)));
            }
            await Task.WhenAll(pending);
        }

        var begin = Stopwatch.GetTimestamp();
        await PaceAsync(slowRate, slowRate * slowSeconds, slowIds, withReference: true);
        var slowPosts = Volatile.Read(ref posts);
        await PaceAsync(fastRate, total - slowIds.Count, fastIds, withReference: false);
        await WaitForAsync(() => arrivals.Count >= total, TimeSpan.FromMinutes(5));
        var end = arrivals.Values.Max();

        double[] Latencies(List<Guid> ids) => ids.Where(arrivals.ContainsKey)
            .Select(id => Stopwatch.GetElapsedTime(receiver.PublishedAt[id], arrivals[id]).TotalMilliseconds).Order().ToArray();
        var slow = Latencies(slowIds);
        var fast = Latencies(fastIds);
        var all = Latencies([.. slowIds, .. fastIds]);
        var reference = receiver.Stats(referencePaths[0]).Arrivals().Select(a => a.LatencyMs).Order().ToArray();
        var referenceP50 = Stats.Percentile(reference, 0.5);
        var seconds = Stopwatch.GetElapsedTime(begin, end).TotalSeconds;
        var metrics = new Dictionary<string, double>
        {
            ["events"] = total,
            ["POSTs"] = posts,
            ["POSTs at 50/s"] = slowPosts,
            ["events per POST, median"] = Stats.Median(sizes.Select(s => (double)s)),
            ["p99 ms at 50/s, batched"] = Math.Round(Stats.Percentile(slow, 0.99), 1),
            ["p50 ms at 50/s, unbatched reference"] = Math.Round(referenceP50, 1),
            ["p99 ms at 50/s, unbatched reference"] = Math.Round(Stats.Percentile(reference, 0.99), 1),
            ["added p99 ms at 50/s (batched p99 − reference p50)"] = Math.Round(Stats.Percentile(slow, 0.99) - referenceP50, 1),
            ["p99 ms at 1,000/s, batched"] = Math.Round(Stats.Percentile(fast, 0.99), 1),
        };
        return new Result("batched", arrivals.Count, Math.Round(seconds, 2), Math.Round(arrivals.Count / seconds, 1),
            Stats.Percentile(all, 0.5), Stats.Percentile(all, 0.99), all.Length == 0 ? null : all[^1], 0, 0,
            new Dictionary<string, double> { ["dispatcher"] = 0, ["postgresql"] = 0, ["rabbitmq"] = 0, ["load generator + receiver"] = 0 }, 0,
            $"max_events {BatchMaxEvents}, max_wait_ms {BatchMaxWaitMs}: {posts} POSTs for {arrivals.Count} events; " +
            $"{slowRate}/s for {slowSeconds} s, then {fastRate}/s; latency: publish → arrival of the batch holding the event",
            Metrics: Finite(metrics));
    }

    /// <summary>The user's deliveries in <paramref name="status"/> (events, not batches).</summary>
    private async Task<long> CountDeliveriesAsync(string user, string status)
    {
        await using var cmd = db.CreateCommand("""
            SELECT count(*) FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
            WHERE s.user_id = $1 AND d.status = $2
            """);
        cmd.Parameters.Add(new() { Value = user });
        cmd.Parameters.Add(new() { Value = status });
        return (long)(await cmd.ExecuteScalarAsync())!;
    }
}
