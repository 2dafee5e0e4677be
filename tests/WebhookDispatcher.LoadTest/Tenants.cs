using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using MassTransit;
using Notely.Events;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// The "Must reach" scenarios of issue 14 (docs/benchmarks/tenants.md): <c>hostile</c>, one
/// tenant's latency while two others publish maximum-size events and fan out to the most
/// subscriptions allowed on one host; <c>backlog1</c>, the database writes of 100,000 deliveries
/// waiting behind a rate limit of 1/s, and its drain rate.
/// </summary>
internal sealed partial class Runner
{
    /// <summary>Tenant A: maximum-size events, each to all of A's subscriptions.</summary>
    private const int HostileEventsA = 20;

    /// <summary>Tenant A's subscriptions.</summary>
    private const int HostileSubscriptionsA = 20;

    /// <summary>Tenant B's subscriptions: the default of <c>Subscriptions:MaxPerUser</c>.</summary>
    private const int HostileSubscriptionsB = 200;

    /// <summary>Tenant B's events, each to all of B's subscriptions (4,000 deliveries).</summary>
    private const int HostileEventsB = 20;

    /// <summary>Tenant C's events per second, throughout.</summary>
    private const int HostileRateC = 200;

    /// <summary>Tenant C alone before it is measured (its new subscription's first seconds, not counted).</summary>
    private static readonly TimeSpan HostileLeadIn = TimeSpan.FromSeconds(5);

    /// <summary>Tenant C alone, measured: its solo p99.</summary>
    private static readonly TimeSpan HostileSolo = TimeSpan.FromSeconds(15);

    /// <summary>Tenant C keeps publishing at least this long after A and B published.</summary>
    private static readonly TimeSpan HostileMinimum = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Tenant C (one subscription) publishes 200 events/s throughout: 5 s lead-in, 15 s alone
    /// (its solo p99), then tenant A publishes 20 events whose payload is just under
    /// <c>Delivery:MaxEventBytes</c> to its 20 subscriptions while tenant B, with 200
    /// subscriptions (the default <c>Subscriptions:MaxPerUser</c>) all on one receiver port that
    /// answers in 100 ms, publishes 20 events (4,000 deliveries). C's p99 over the events it
    /// published from A's and B's publish until their last delivery arrived, against its solo
    /// p99; the dispatcher's peak resident set in each phase; the most connections and requests
    /// in progress at once on B's port; A's and B's deliveries counted at the receiver.
    /// </summary>
    /// <remarks>
    /// <c>hostileA</c> and <c>hostileB</c> run the same with only tenant A's or only tenant B's
    /// load (the other's subscriptions exist, it publishes nothing), to tell which one costs C its
    /// latency. <c>hostileA1</c>: only tenant A publishes, and A has one subscription instead of
    /// 20: its 20 maximum-size events make 20 deliveries, 5 MiB of payload rows instead of 100 MiB,
    /// about what A's 20 subscriptions would write if a payload were stored once per event.
    /// </remarks>
    /// <param name="name">The scenario's name in the report.</param>
    /// <param name="publishA">Whether tenant A publishes.</param>
    /// <param name="publishB">Whether tenant B publishes.</param>
    /// <param name="subscriptionsA">Tenant A's subscriptions (20; 1 in <c>hostileA1</c>).</param>
    private async Task<Result> HostileAsync(string name = "hostile", bool publishA = true, bool publishB = true, int subscriptionsA = HostileSubscriptionsA)
    {
        var (userC, pathsC) = await SubscribeAsync("fast", 1);
        var (userA, pathsA) = await SubscribeAsync("fast", subscriptionsA);
        var urlB = receiver.FreshUrl();
        var (userB, firstB) = await SubscribeAsync("paced", 1, baseUrl: urlB);
        // The other 199 of B's subscriptions are copies of the first in the database (the API
        // allows 30 creations a minute per user): same user, host, port and settings, their own path.
        await CloneSubscriptionAsync(await HistoryData.SubscriptionOfAsync(db, userB), HostileSubscriptionsB - 1);
        var pathsB = new List<string>(firstB);
        pathsB.AddRange(Enumerable.Range(1, HostileSubscriptionsB - 1).Select(i => $"{firstB[0]}-{i}"));
        var requestsB = receiver.Track($"/paced/{userB}");
        var connectionsB = receiver.Connections(new Uri(urlB).Port);
        var bigA = Enumerable.Range(0, HostileEventsA).Select(_ => MaximumSizeEvent(userA, MaxEventBytes)).ToList();
        var payloadBytes = Encoding.UTF8.GetByteCount(WebhookPayload.Build(bigA[0]));
        await QuietAsync();

        var cStart = Stopwatch.GetTimestamp();
        using var stopC = new CancellationTokenSource();
        var publisherC = Task.Run(async () =>
        {
            var pending = new List<Task>();
            for (long i = 0; !stopC.IsCancellationRequested; i++)
            {
                var due = cStart + (long)(i * (double)Stopwatch.Frequency / HostileRateC);
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait);
                var evt = Event(userC);
                pending.Add(bus.Publish(evt).ContinueWith(_ => receiver.ConfirmedAt[evt.EventId] = Stopwatch.GetTimestamp(),
                    TaskContinuationOptions.ExecuteSynchronously));
            }
            await Task.WhenAll(pending);
            return pending.Count;
        });

        await Task.Delay(HostileLeadIn);
        var soloStart = Stopwatch.GetTimestamp();
        var soloSampler = RssSampler.Start(dispatchers);
        await Task.Delay(HostileSolo);
        var peakSolo = await soloSampler.StopAsync();
        var hostileSampler = RssSampler.Start(dispatchers);
        requestsB.ResetPeak();
        connectionsB.ResetPeak();
        var cpu0 = Proc.Snapshot(Pids);
        var hostileStart = Stopwatch.GetTimestamp();
        await Task.WhenAll(
            Task.WhenAll(bigA.Where(_ => publishA).Select(e =>
            {
                receiver.PublishedAt[e.EventId] = Stopwatch.GetTimestamp(); // made before the run
                return bus.Publish(e);
            })),
            Task.WhenAll(Enumerable.Range(0, publishB ? HostileEventsB : 0).Select(_ => bus.Publish(Event(userB)))));
        var publishedAB = Stopwatch.GetElapsedTime(hostileStart).TotalSeconds;
        int Arrived(List<string> paths) => paths.Sum(p => receiver.Stats(p).Unique);
        var expectedA = publishA ? HostileEventsA * subscriptionsA : 0;
        var expectedB = publishB ? HostileEventsB * HostileSubscriptionsB : 0;
        var allArrived = true;
        try
        {
            await WaitForAsync(() => Arrived(pathsA) >= expectedA && Arrived(pathsB) >= expectedB, TimeSpan.FromMinutes(10));
        }
        catch (TimeoutException)
        {
            allArrived = false;
        }
        var lastA = publishA ? pathsA.Max(p => receiver.Stats(p).Last) : hostileStart;
        var lastB = publishB ? pathsB.Max(p => receiver.Stats(p).Last) : hostileStart;
        var hostileEnd = Math.Max(lastA, lastB);
        var minimumEnd = hostileStart + (long)(HostileMinimum.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < minimumEnd) await Task.Delay(100);
        await stopC.CancelAsync();
        var publishedC = await publisherC;
        await WaitForAsync(() => receiver.Stats(pathsC[0]).Unique >= publishedC, TimeSpan.FromMinutes(5));
        var cpu1 = Proc.Snapshot(Pids);
        var peakHostile = await hostileSampler.StopAsync();

        var arrivalsC = receiver.Stats(pathsC[0]).Arrivals();
        double[] LatenciesC(long from, long to) =>
            [.. arrivalsC.Where(a => a.PublishedAt >= from && a.PublishedAt < to).Select(a => a.LatencyMs).Order()];
        var solo = LatenciesC(soloStart, hostileStart);
        var hostile = LatenciesC(hostileStart, hostileEnd);
        var afterward = LatenciesC(hostileEnd, long.MaxValue);
        var latenciesA = pathsA.SelectMany(p => receiver.Stats(p).Arrivals()).Select(a => a.LatencyMs).Order().ToArray();
        var latenciesB = pathsB.SelectMany(p => receiver.Stats(p).Arrivals()).Select(a => a.LatencyMs).Order().ToArray();
        var hostileSeconds = Stopwatch.GetElapsedTime(hostileStart, hostileEnd).TotalSeconds;
        var soloP99 = Stats.Percentile(solo, 0.99);
        var hostileP99 = Stats.Percentile(hostile, 0.99);
        var cpu = cpu1.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value - cpu0[kv.Key], 2));
        var deliveries = Arrived(pathsA) + Arrived(pathsB) + hostile.Length + afterward.Length;
        if (options.StagesReport)
            _stageReports.Add("Tenant C, from 2 s before A and B published (second 2 is theirs):\n\n" + await Stages.ReportAsync(db,
                await HistoryData.SubscriptionOfAsync(db, userC), arrivalsC, receiver.ConfirmedAt,
                hostileStart - 2 * Stopwatch.Frequency, detailSeconds: 12));
        var metrics = new Dictionary<string, double>
        {
            ["C solo p50 ms"] = Stats.Percentile(solo, 0.5),
            ["C solo p99 ms"] = soloP99,
            ["C hostile p50 ms"] = Stats.Percentile(hostile, 0.5),
            ["C hostile p99 ms"] = hostileP99,
            ["C hostile max ms"] = hostile.Length == 0 ? double.NaN : hostile[^1],
            ["C hostile p99 ÷ solo p99"] = Math.Round(hostileP99 / soloP99, 2),
            ["C events in hostile window"] = hostile.Length,
            ["hostile window s (publish → last A/B arrival)"] = Math.Round(hostileSeconds, 2),
            ["A+B publish s"] = Math.Round(publishedAB, 2),
            ["A delivered"] = Arrived(pathsA),
            ["A expected"] = expectedA,
            ["A last arrival s"] = Math.Round(Stopwatch.GetElapsedTime(hostileStart, lastA).TotalSeconds, 2),
            ["A p50 ms"] = Stats.Percentile(latenciesA, 0.5),
            ["B delivered"] = Arrived(pathsB),
            ["B expected"] = expectedB,
            ["B last arrival s"] = Math.Round(Stopwatch.GetElapsedTime(hostileStart, lastB).TotalSeconds, 2),
            ["B p50 ms"] = Stats.Percentile(latenciesB, 0.5),
            ["B peak requests in progress"] = requestsB.Peak,
            ["B peak connections"] = connectionsB.Peak,
            ["dispatcher peak RSS MiB, C alone"] = peakSolo / (1024 * 1024),
            ["dispatcher peak RSS MiB, hostile"] = peakHostile / (1024 * 1024),
            ["A payload bytes"] = payloadBytes,
        };
        var note = string.Create(CultureInfo.InvariantCulture,
            $"C p99 {soloP99:0.0} ms alone → {hostileP99:0.0} ms hostile ({hostileP99 / soloP99:0.00}×, {hostile.Length} events in {hostileSeconds:0.0} s); " +
            $"A {Arrived(pathsA)}/{expectedA} ({payloadBytes:N0}-byte payloads), B {Arrived(pathsB)}/{expectedB}{(allArrived ? "" : " NOT ALL ARRIVED")}; " +
            $"B at most {requestsB.Peak} requests / {connectionsB.Peak} connections at once; peak RSS {peakSolo / (1024 * 1024)} MiB alone, {peakHostile / (1024 * 1024)} MiB hostile");
        return new Result(name, hostile.Length, Math.Round(hostileSeconds, 2), Math.Round(hostile.Length / hostileSeconds, 1),
            Stats.Percentile(hostile, 0.5), hostileP99, hostile.Length == 0 ? null : hostile[^1],
            Math.Round(cpu["dispatcher"] * 1e6 / deliveries), Math.Round(cpu["machine"] * 1e6 / deliveries), cpu,
            Math.Max(peakSolo, peakHostile) / (1024 * 1024), note, Metrics: Finite(metrics));
    }

    /// <summary>The figures that have a value (JSON has no NaN: a percentile of no arrivals is left out).</summary>
    private static Dictionary<string, double> Finite(Dictionary<string, double> metrics) =>
        metrics.Where(kv => double.IsFinite(kv.Value)).ToDictionary();

    /// <summary>The dispatchers' <c>Delivery:MaxEventBytes</c>: the default unless <c>--dispatcher-env Delivery__MaxEventBytes=…</c> sets it.</summary>
    private int MaxEventBytes => options.DispatcherEnv.TryGetValue("Delivery__MaxEventBytes", out var bytes)
        ? int.Parse(bytes, CultureInfo.InvariantCulture)
        : EventSizeLimit.DefaultMaxEventBytes;

    /// <summary>An email.received event of <paramref name="user"/> whose payload is just under <paramref name="maxEventBytes"/> (a long body preview).</summary>
    private EmailReceived MaximumSizeEvent(string user, int maxEventBytes)
    {
        var evt = Event(user);
        var overhead = Encoding.UTF8.GetByteCount(WebhookPayload.Build(evt with { BodyPreview = "" }));
        var length = maxEventBytes - 64 - overhead;
        // Text that does not compress (a hostile tenant's choice; PostgreSQL compresses stored
        // text, so a repeated sentence would cost it almost nothing): letters, digits and spaces.
        const string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     ";
        var random = new Random(evt.EventId.GetHashCode());
        var body = string.Create(length, random, (span, r) =>
        {
            for (var i = 0; i < span.Length; i++) span[i] = alphabet[r.Next(alphabet.Length)];
        });
        var big = evt with { BodyPreview = body };
        var bytes = Encoding.UTF8.GetByteCount(WebhookPayload.Build(big));
        if (bytes > maxEventBytes || bytes < maxEventBytes - 128)
            throw new InvalidOperationException($"the maximum-size payload came out at {bytes} bytes for a cap of {maxEventBytes}");
        return big;
    }

    /// <summary>
    /// <paramref name="copies"/> copies of a subscription, straight into the database: every
    /// column as the original's except the id, the URL (the original's with <c>-1</c>, <c>-2</c> …
    /// appended) and the creation time.
    /// </summary>
    private async Task CloneSubscriptionAsync(Guid original, int copies)
    {
        string columns;
        await using (var cmd = db.CreateCommand("""
            SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'webhook_subscriptions' AND column_name NOT IN ('id', 'url', 'created_at', 'updated_at')
            """))
            columns = (string)(await cmd.ExecuteScalarAsync())!;
        await using var insert = db.CreateCommand($"""
            INSERT INTO webhook_subscriptions (id, url, created_at, updated_at, {columns})
            SELECT gen_random_uuid(), s.url || '-' || g.n, now(), now(), {string.Join(", ", columns.Split(", ").Select(c => "s." + c))}
            FROM webhook_subscriptions s, generate_series(1, $2) AS g(n) WHERE s.id = $1
            """);
        insert.Parameters.Add(new NpgsqlParameter { Value = original });
        insert.Parameters.Add(new NpgsqlParameter { Value = copies });
        if (await insert.ExecuteNonQueryAsync() != copies) throw new InvalidOperationException("the subscriptions were not copied");
    }

    /// <summary>Deliveries waiting behind the rate limit in <c>backlog1</c>.</summary>
    private const int BacklogDeliveries = 100_000;

    /// <summary>How long <c>backlog1</c> measures its steady state.</summary>
    private static readonly TimeSpan BacklogWindow = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A subscription with <c>rate_limit_per_second: 1</c> and 100,000 deliveries, pending and
    /// due, inserted straight into the database as the fan-out inserts them, and one
    /// <c>DeliverWebhook</c> for each (as the fan-out hands them to the scheduler). Once every one
    /// waits held in a lane or in the backlog, 60 s of steady state: the row writes on
    /// <c>webhook_deliveries</c> (inserts + updates over its partitions, from
    /// <c>pg_stat_user_tables</c>), the attempts recorded meanwhile (<c>webhook_delivery_attempts</c>
    /// inserts: each is one claim and one record on the delivery), and the successful deliveries
    /// the receiver got (the drain rate, which should be 60 a minute with any number of replicas).
    /// Afterwards the subscription is switched off and its deliveries cancelled.
    /// </summary>
    private async Task<Result> Backlog1Async()
    {
        var (user, paths) = await SubscribeAsync("fast", 1);
        var subscription = await HistoryData.SubscriptionOfAsync(db, user);
        using (var patch = await _api.PatchAsJsonAsync($"/api/webhooks/{subscription}", new { rate_limit_per_second = 1 }))
            patch.EnsureSuccessStatusCode();
        await QuietAsync();
        var before = await WriteCountsAsync();
        var setup = Stopwatch.StartNew();
        var ids = new List<Guid>(BacklogDeliveries);
        await using (var insert = db.CreateCommand("""
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at)
            SELECT webhook_uuid_v7(), s.id, 'email.received', e.id,
                   format('{"id":"%s","event_type":"email.received","created_at":"%s","data":{"email_id":"em_%s","subject":"Quarterly report — draft","from":"alice@example.com","to":["bob@example.com"],"date":"%s","body_preview":"Hi Bob, attached is the draft of the quarterly report. Numbers are final except for the last week."}}',
                          e.id, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), left(e.id::text, 8), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
                   'pending', 0, 1 + s.retry_count, now(), now()
            FROM webhook_subscriptions s, (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)) e
            WHERE s.id = $1
            RETURNING id
            """))
        {
            insert.CommandTimeout = 0;
            insert.Parameters.Add(new NpgsqlParameter { Value = subscription });
            insert.Parameters.Add(new NpgsqlParameter { Value = BacklogDeliveries });
            await using var reader = await insert.ExecuteReaderAsync();
            while (await reader.ReadAsync()) ids.Add(reader.GetGuid(0));
        }
        var inserted = setup.Elapsed.TotalSeconds;
        using (var window = new SemaphoreSlim(256))
        {
            var pending = new List<Task>(ids.Count);
            foreach (var id in ids)
            {
                await window.WaitAsync();
                pending.Add(bus.Publish(new DeliverWebhook(id, subscription)).ContinueWith(_ => window.Release()));
            }
            await Task.WhenAll(pending);
        }
        var published = setup.Elapsed.TotalSeconds;
        // Steady: every waiting delivery is held by a dispatcher (in a lane or in its backlog).
        var waitedFor = Stopwatch.StartNew();
        (long Unheld, long Backlog, long Held) state;
        while (true)
        {
            state = await BacklogStateAsync(subscription);
            if (state.Unheld <= 2L * dispatchers.Count) break;
            if (waitedFor.Elapsed > TimeSpan.FromMinutes(10)) break;
            await Task.Delay(2000);
        }
        var steady = setup.Elapsed.TotalSeconds;
        // Let the last hold passes run and every backend's statistics reach pg_stat (they are sent at most once a second, later when idle).
        await Task.Delay(TimeSpan.FromSeconds(15));

        var samples = new List<(long At, WriteCounts Counts, int Arrived)>();
        var settled = await WriteCountsAsync();
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; ; i++)
        {
            samples.Add((Stopwatch.GetTimestamp(), await WriteCountsAsync(), receiver.Stats(paths[0]).Unique));
            if (i == 6) break;
            var next = start + (long)((i + 1) * BacklogWindow.TotalSeconds / 6 * Stopwatch.Frequency);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
        }
        var seconds = Stopwatch.GetElapsedTime(samples[0].At, samples[^1].At).TotalSeconds;
        var first = samples[0];
        var last = samples[^1];
        var writes = last.Counts.Inserts + last.Counts.Updates - first.Counts.Inserts - first.Counts.Updates;
        var attempts = last.Counts.AttemptInserts - first.Counts.AttemptInserts;
        var arrived = last.Arrived - first.Arrived;
        var perInterval = samples.Zip(samples.Skip(1), (a, b) =>
            (b.Counts.Inserts + b.Counts.Updates - a.Counts.Inserts - a.Counts.Updates) / Stopwatch.GetElapsedTime(a.At, b.At).TotalSeconds).ToList();
        var end = await BacklogStateAsync(subscription);

        // Done: switch the subscription off and cancel what waits, so later scenarios do not drain it.
        // Two statements, each its own transaction: one transaction updating the subscription and then
        // its deliveries takes locks in the opposite order to the recorder's and can deadlock with it.
        await using (var off = db.CreateCommand("UPDATE webhook_subscriptions SET is_active = false WHERE id = $1"))
        {
            off.Parameters.Add(new NpgsqlParameter { Value = subscription });
            await off.ExecuteNonQueryAsync();
        }
        await using (var cancel = db.CreateCommand("""
            UPDATE webhook_deliveries SET status = 'cancelled', completed_at = now(), next_retry_at = NULL, held_by = NULL
            WHERE subscription_id = $1 AND status IN ('pending', 'retrying') AND NOT in_flight
            """))
        {
            cancel.CommandTimeout = 0;
            cancel.Parameters.Add(new NpgsqlParameter { Value = subscription });
            await cancel.ExecuteNonQueryAsync();
        }

        var metrics = new Dictionary<string, double>
        {
            ["row writes/s on webhook_deliveries"] = Math.Round(writes / seconds, 2),
            ["of which inserts/s"] = Math.Round((last.Counts.Inserts - first.Counts.Inserts) / seconds, 2),
            ["highest 10 s interval, writes/s"] = Math.Round(perInterval.Max(), 2),
            ["attempts recorded/s (each: 1 claim + 1 record)"] = Math.Round(attempts / seconds, 2),
            ["writes/s besides claims and records"] = Math.Round((writes - 2.0 * attempts) / seconds, 2),
            ["drain: deliveries/min at the receiver"] = Math.Round(arrived * 60 / seconds, 1),
            ["setup: insert s"] = Math.Round(inserted, 1),
            ["setup: DeliverWebhook published s"] = Math.Round(published, 1),
            ["setup: all held s"] = Math.Round(steady, 1),
            ["setup: row writes on webhook_deliveries (the inserts included)"] = settled.Inserts + settled.Updates - before.Inserts - before.Updates,
            ["in backlog (next_retry_at null) at the end"] = end.Backlog,
            ["held (held_by set) at the end"] = end.Held,
        };
        var note = string.Create(CultureInfo.InvariantCulture,
            $"{writes / seconds:0.00} row writes/s on webhook_deliveries over {seconds:0} s ({attempts} attempts recorded, i.e. {2.0 * attempts / seconds:0.00}/s claims + records); " +
            $"drain {arrived * 60 / seconds:0.0}/min; per 10 s: {string.Join(", ", perInterval.Select(v => v.ToString("0.0", CultureInfo.InvariantCulture)))} writes/s; " +
            $"setup {steady:0} s until all {BacklogDeliveries:N0} were held ({end.Backlog:N0} in the backlog, {end.Held:N0} held at the end); {dispatchers.Count} dispatcher(s)");
        var zero = Proc.Snapshot(Pids).ToDictionary(kv => kv.Key, _ => 0.0);
        return new Result("backlog1", arrived, Math.Round(seconds, 1), Math.Round(arrived / seconds, 2), null, null, null, 0, 0, zero,
            dispatchers.Max(d => Proc.RssBytes(d.Pid)) / (1024 * 1024), note, Metrics: Finite(metrics));
    }

    private async Task<(long Unheld, long Backlog, long Held)> BacklogStateAsync(Guid subscription)
    {
        await using var cmd = db.CreateCommand("""
            SELECT count(*) FILTER (WHERE held_by IS NULL), count(*) FILTER (WHERE next_retry_at IS NULL), count(*) FILTER (WHERE held_by IS NOT NULL)
            FROM webhook_deliveries WHERE subscription_id = $1 AND status IN ('pending', 'retrying')
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = subscription });
        await using var reader = await cmd.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    /// <param name="Inserts">Rows inserted into <c>webhook_deliveries</c> (all partitions).</param>
    /// <param name="Updates">Rows updated in <c>webhook_deliveries</c> (all partitions).</param>
    /// <param name="AttemptInserts">Rows inserted into <c>webhook_delivery_attempts</c> (all partitions).</param>
    private readonly record struct WriteCounts(long Inserts, long Updates, long AttemptInserts);

    /// <summary>
    /// The cumulative row counts of <c>pg_stat_user_tables</c> over the partitions of the two
    /// delivery tables. Backends report their counts at most once a second, and up to seconds
    /// later when idle; in a steady state the lag is the same at both ends of a window.
    /// </summary>
    private async Task<WriteCounts> WriteCountsAsync()
    {
        await using var cmd = db.CreateCommand("""
            SELECT coalesce(sum(n_tup_ins) FILTER (WHERE i.inhparent = 'webhook_deliveries'::regclass), 0)::bigint,
                   coalesce(sum(n_tup_upd) FILTER (WHERE i.inhparent = 'webhook_deliveries'::regclass), 0)::bigint,
                   coalesce(sum(n_tup_ins) FILTER (WHERE i.inhparent = 'webhook_delivery_attempts'::regclass), 0)::bigint
            FROM pg_stat_user_tables t JOIN pg_inherits i ON i.inhrelid = t.relid
            WHERE i.inhparent IN ('webhook_deliveries'::regclass, 'webhook_delivery_attempts'::regclass)
            """);
        await using var reader = await cmd.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new WriteCounts(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }
}
