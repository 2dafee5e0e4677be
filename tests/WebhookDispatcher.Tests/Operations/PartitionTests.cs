using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Observability;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// The day partitions of the delivery history are made ahead by their own step, on a database of
/// each test's own: exactly the days from yesterday to <see cref="PartitionOptions.AheadDays"/>
/// ahead, with the bounds of their day, whatever blocks retention; and the gauge an operator
/// alerts on follows them.
/// </summary>
[NonParallelizable]
public sealed class PartitionTests
{
    [Test]
    public async Task A_pass_makes_exactly_the_missing_partitions_from_yesterday_to_the_days_ahead_with_the_bounds_of_their_day()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        // The migration made partitions up to 14 days ahead: take away all of them but today's.
        var days = Enumerable.Range(-1, 16).Select(today.AddDays).ToList();
        await history.DropDaysAsync([.. days.Where(d => d != today)]);

        var pass = await history.Partitions.RunOnceAsync(CancellationToken.None);
        var deliveries = await history.AttachedAsync("webhook_deliveries");
        var attempts = await history.AttachedAsync("webhook_delivery_attempts");
        var payloads = await history.AttachedAsync("webhook_event_payloads");
        var again = await history.Partitions.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(pass.Today, Is.EqualTo(today));
            Assert.That(pass.PartitionsCreated, Is.EqualTo(3 * 15), "yesterday and 14 days ahead, deliveries, attempts and payloads");
            Assert.That(pass.DaysPostponed, Is.Empty);
            Assert.That(pass.DaysAhead, Is.EqualTo(14));
            foreach (var day in days)
            {
                var bound = await history.BoundOfAsync(day);
                Assert.That(deliveries.GetValueOrDefault($"webhook_deliveries_{day:yyyyMMdd}"), Is.EqualTo(bound), $"deliveries of {day}");
                Assert.That(attempts.GetValueOrDefault($"webhook_delivery_attempts_{day:yyyyMMdd}"), Is.EqualTo(bound), $"attempts of {day}");
                Assert.That(payloads.GetValueOrDefault($"webhook_event_payloads_{day:yyyyMMdd}"), Is.EqualTo(bound), $"payloads of {day}");
            }
            Assert.That(deliveries.Keys, Has.None.EqualTo($"webhook_deliveries_{today.AddDays(15):yyyyMMdd}"), "nothing past the days ahead");
            Assert.That(again.PartitionsCreated, Is.Zero, "partitions that exist are left alone");
            Assert.That(again.DaysAhead, Is.EqualTo(14));
            Assert.That(history.PartitionLog.At(LogLevel.Warning), Is.Empty);
        });
    }

    [Test]
    public async Task A_worker_runs_the_partition_step_as_a_hosted_loop_and_its_database_has_the_days_ahead()
    {
        var maintenance = Dispatcher.Services.GetRequiredService<PartitionMaintenance>();
        var pass = await maintenance.RunOnceAsync(CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(Dispatcher.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>(), Has.Some.SameAs(maintenance));
            Assert.That(pass.DaysAhead, Is.EqualTo(14));
            Assert.That(pass.DaysPostponed, Is.Empty);
        });
    }

    [Test]
    public async Task Passes_of_two_replicas_at_once_make_each_partition_once_and_neither_fails()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        var missing = Enumerable.Range(1, 14).Select(today.AddDays).ToArray();
        await history.DropDaysAsync(missing);
        var otherLog = new ListLogger<PartitionMaintenance>();
        var other = new PartitionMaintenance(history.DataSource, Options.Create(new PartitionOptions { LockTimeoutSeconds = 30 }),
            TimeProvider.System, otherLog);

        var passes = await Task.WhenAll(history.Partitions.RunOnceAsync(CancellationToken.None), other.RunOnceAsync(CancellationToken.None));
        var deliveries = await history.AttachedAsync("webhook_deliveries");

        Assert.Multiple(() =>
        {
            Assert.That(passes.Sum(p => p.PartitionsCreated), Is.EqualTo(3 * missing.Length), "every missing table made by exactly one of them");
            Assert.That(passes[1].DaysPostponed, Is.Empty, $"the one that may wait 30 s for a lock never gives up a day: {string.Join(" | ", otherLog.At(LogLevel.Warning))}");
            Assert.That(passes.Max(p => p.DaysAhead), Is.EqualTo(14));
            Assert.That(missing.Select(d => $"webhook_deliveries_{d:yyyyMMdd}"), Is.SubsetOf(deliveries.Keys));
        });
    }

    [Test]
    public async Task Partitions_are_made_while_retention_is_blocked_by_a_long_transaction_and_the_gauge_follows_them()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        await history.DropDaysAsync(today.AddDays(10), today.AddDays(14));
        await using var gauge = await GaugeReader.StartAsync(history.ConnectionString);
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(gauge.Collect() == 9), TimeSpan.FromSeconds(30)), Is.True,
            $"the gauge shows partitions reaching 9 days ahead once the 10th is missing (last read {gauge.Collect()})");

        // A session idle in its transaction, holding what retention needs: its lock (as a pass
        // stuck behind that session would) and a read of the history.
        await using (var blocker = await history.HoldAsync(
                         $"SELECT pg_advisory_xact_lock({HistoryRetention.LockKey})", "LOCK TABLE webhook_deliveries IN ACCESS SHARE MODE"))
        {
            var retention = await history.Retention.RunOnceAsync(CancellationToken.None);
            var pass = await history.Partitions.RunOnceAsync(CancellationToken.None);
            var deliveries = await history.AttachedAsync("webhook_deliveries");
            var attempts = await history.AttachedAsync("webhook_delivery_attempts");
            var blockerStillOpen = await history.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction'", blocker.ProcessID);

            Assert.Multiple(async () =>
            {
                Assert.That(retention.Ran, Is.False, "retention is blocked");
                Assert.That(history.RetentionLog.At(LogLevel.Warning),
                    Has.One.Contains("pass skipped").And.Contains($"pid {blocker.ProcessID}").And.Contains("idle in transaction"));
                Assert.That(blockerStillOpen, Is.EqualTo(1));
                Assert.That(pass.PartitionsCreated, Is.EqualTo(6));
                Assert.That(pass.DaysAhead, Is.EqualTo(14));
                foreach (var day in new[] { today.AddDays(10), today.AddDays(14) })
                {
                    var bound = await history.BoundOfAsync(day);
                    Assert.That(deliveries.GetValueOrDefault($"webhook_deliveries_{day:yyyyMMdd}"), Is.EqualTo(bound));
                    Assert.That(attempts.GetValueOrDefault($"webhook_delivery_attempts_{day:yyyyMMdd}"), Is.EqualTo(bound));
                }
            });
        }
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(gauge.Collect() == 14), TimeSpan.FromSeconds(30)), Is.True,
            $"the gauge is back at 14 (last read {gauge.Collect()})");
    }

    [Test]
    public async Task A_day_whose_partition_cannot_get_its_lock_in_time_is_logged_and_left_for_the_next_pass()
    {
        await using var history = await HistoryScratch.CreateAsync();
        var today = await history.TodayAsync();
        await history.DropDaysAsync(today.AddDays(13), today.AddDays(14));
        var subscription = await history.SubscribeAsync();

        PartitionPass blocked;
        // Attaching a partition clones its foreign key, which waits for a transaction that changed a subscription.
        await using (await history.HoldAsync($"UPDATE webhook_subscriptions SET is_active = false WHERE id = '{subscription}'"))
            blocked = await history.Partitions.RunOnceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2));
        var next = await history.Partitions.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(blocked.PartitionsCreated, Is.Zero);
            Assert.That(blocked.DaysPostponed, Is.EqualTo(new[] { today.AddDays(13), today.AddDays(14) }), "each day tried, none waited for ever");
            Assert.That(blocked.DaysAhead, Is.EqualTo(12));
            Assert.That(history.PartitionLog.At(LogLevel.Warning), Has.Exactly(2).Contains("55P03"));
            Assert.That(next.PartitionsCreated, Is.EqualTo(6), "made on the next pass");
            Assert.That(next.DaysAhead, Is.EqualTo(14));
        });
    }

    [Test]
    public async Task A_process_clock_far_ahead_makes_partitions_for_the_database_s_today()
    {
        await using var history = await HistoryScratch.CreateAsync(new ClockAhead(TimeSpan.FromDays(60)));
        var today = await history.TodayAsync();
        await history.DropDaysAsync(today.AddDays(14));

        var pass = await history.Partitions.RunOnceAsync(CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(pass.Today, Is.EqualTo(today));
            Assert.That(pass.PartitionsCreated, Is.EqualTo(3));
            Assert.That(await history.ExistsAsync($"webhook_deliveries_{today.AddDays(14):yyyyMMdd}"), Is.True);
            Assert.That(await history.ExistsAsync($"webhook_deliveries_{today.AddDays(60):yyyyMMdd}"), Is.False, "nothing made for the process's today");
        });
    }

    /// <summary>A process clock <paramref name="ahead"/> of the real one (timers run as usual).</summary>
    internal sealed class ClockAhead(TimeSpan ahead) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + ahead;
    }

    /// <summary>The partition gauge of a host of its own on a connection string, sampled every second, read as an exporter reads it.</summary>
    private sealed class GaugeReader : IAsyncDisposable
    {
        private readonly ServiceProvider _services;
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<string, int> _values = new();

        private GaugeReader(ServiceProvider services)
        {
            _services = services;
            var meters = services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name == HistoryPartitionMetrics.DaysAheadInstrument)
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => _values[instrument.Name] = value);
            _listener.Start();
        }

        public static Task<GaugeReader> StartAsync(string connectionString)
        {
            var services = new ServiceCollection()
                .AddMetrics()
                .AddSingleton<IConfiguration>(new ConfigurationBuilder()
                    .AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = connectionString }).Build())
                .AddSingleton(Options.Create(new HealthOptions()))
                .AddSingleton(Options.Create(new MonitoringOptions { BacklogSampleSeconds = 1 }))
                .AddSingleton(TimeProvider.System)
                .AddSingleton(typeof(ILogger<>), typeof(NullLogger<>))
                .AddSingleton<MonitoringDatabase>()
                .AddSingleton<HistoryPartitionMetrics>()
                .BuildServiceProvider();
            services.GetRequiredService<HistoryPartitionMetrics>();
            return Task.FromResult(new GaugeReader(services));
        }

        /// <summary>Collects once; null when the gauge reported nothing.</summary>
        public int? Collect()
        {
            _values.Clear();
            _listener.RecordObservableInstruments();
            return _values.TryGetValue(HistoryPartitionMetrics.DaysAheadInstrument, out var days) ? days : null;
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Dispose();
            await _services.DisposeAsync();
        }
    }
}
