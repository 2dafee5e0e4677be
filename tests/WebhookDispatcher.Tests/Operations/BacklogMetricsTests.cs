using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Observability;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// The service-wide backlog gauges, read the way an OpenTelemetry exporter reads them (a
/// <see cref="MeterListener"/> collecting the observable instruments), on a database of the test's
/// own so the numbers are exact.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class BacklogMetricsTests
{
    private const int SampleSeconds = 5;

    [Test]
    public async Task The_backlog_gauges_count_waiting_deliveries_and_the_oldest_pending_age_sampling_the_database_once_per_interval()
    {
        await using var database = await ScratchDatabase.CreateAsync("metrics", migrate: true);
        await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Dispatcher:Workers"] = "false",
            ["Monitoring:BacklogSampleSeconds"] = SampleSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        var subscription = Guid.NewGuid();
        await database.ExecuteInAsync("""
            INSERT INTO webhook_subscriptions (id, user_id, url, event_types, secret, is_active, retry_count, timeout_seconds)
            VALUES (@id, 'metrics-user', 'https://hooks.example.com/h', '{email.received}', 'whsec_x', true, 3, 10)
            """, ("id", subscription));
        // Three pending (the oldest 100 s old), two retrying, and finished ones that must not count.
        foreach (var (status, ageSeconds) in new[]
                 {
                     ("pending", 100), ("pending", 50), ("pending", 10), ("retrying", 300), ("retrying", 20),
                     ("success", 1000), ("success", 5), ("failed", 900), ("cancelled", 800),
                 })
            await AddDeliveryAsync(database, subscription, status, ageSeconds);
        using var gauges = new GaugeReader(api.Services.GetRequiredService<IMeterFactory>());
        var metrics = api.Services.GetRequiredService<DeliveryBacklogMetrics>();

        var first = gauges.Collect();
        var sampled = Stopwatch.StartNew();
        var queriesAfterFirst = metrics.Queries;
        // A new, older pending delivery: not seen until the sample is older than the interval.
        await AddDeliveryAsync(database, subscription, "pending", 500);
        var burst = Enumerable.Range(0, 50).Select(_ => gauges.Collect()).ToList();
        var queriesAfterBurst = metrics.Queries;
        var burstTook = sampled.Elapsed;
        var refreshed = await Dispatcher.EventuallyAsync(() => Task.FromResult(gauges.Collect().Pending == 4), TimeSpan.FromSeconds(SampleSeconds * 3));
        var last = gauges.Collect();

        Assume.That(burstTook, Is.LessThan(TimeSpan.FromSeconds(SampleSeconds)), "the burst ran within one interval");
        Assert.Multiple(() =>
        {
            Assert.That(first.Pending, Is.EqualTo(3));
            Assert.That(first.Retrying, Is.EqualTo(2));
            Assert.That(first.OldestPendingAge, Is.InRange(100.0, 130.0), "seconds since the oldest pending delivery was created");
            Assert.That(queriesAfterFirst, Is.EqualTo(1));
            Assert.That(burst.Select(b => b.Pending), Has.All.EqualTo(3), "50 collections within the interval reuse the sample");
            Assert.That(queriesAfterBurst, Is.EqualTo(queriesAfterFirst), "no query during the burst");
            Assert.That(refreshed, Is.True, "the next interval's sample sees the new delivery");
            Assert.That(last.OldestPendingAge, Is.InRange(500.0, 530.0));
            Assert.That(metrics.Queries, Is.LessThanOrEqualTo(queriesAfterBurst + 4), "at most one query per interval while polling");
        });
    }

    private static Task AddDeliveryAsync(ScratchDatabase database, Guid subscription, string status, int ageSeconds) =>
        database.ExecuteInAsync("""
            INSERT INTO webhook_deliveries (subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, completed_at, next_retry_at)
            VALUES (@subscription, 'email.received', @event, '{}', @status, 0, 4, now() - make_interval(secs => @age),
                    CASE WHEN @status IN ('pending', 'retrying') THEN NULL ELSE now() END,
                    CASE WHEN @status IN ('pending', 'retrying') THEN now() + interval '1 day' END)
            """, ("subscription", subscription), ("event", Guid.NewGuid()), ("status", status), ("age", (double)ageSeconds));

    /// <summary>What one collection of the gauges reported.</summary>
    private sealed record Reading(long? Pending, long? Retrying, double? OldestPendingAge);

    /// <summary>Listens to the backlog gauges of one host (its meter factory), collecting on demand.</summary>
    private sealed class GaugeReader : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<string, double> _values = new();

        public GaugeReader(IMeterFactory host)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == host && instrument.Name is DeliveryBacklogMetrics.WaitingInstrument or DeliveryBacklogMetrics.OldestPendingAgeInstrument)
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => _values[Key(instrument, tags)] = value);
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => _values[Key(instrument, tags)] = value);
            _listener.Start();
        }

        public Reading Collect()
        {
            _values.Clear();
            _listener.RecordObservableInstruments();
            return new Reading(
                _values.TryGetValue($"{DeliveryBacklogMetrics.WaitingInstrument}|pending", out var pending) ? (long)pending : null,
                _values.TryGetValue($"{DeliveryBacklogMetrics.WaitingInstrument}|retrying", out var retrying) ? (long)retrying : null,
                _values.TryGetValue($"{DeliveryBacklogMetrics.OldestPendingAgeInstrument}|", out var age) ? age : null);
        }

        private static string Key(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            $"{instrument.Name}|{(tags.Length > 0 ? tags[0].Value : "")}";

        public void Dispose() => _listener.Dispose();
    }
}
