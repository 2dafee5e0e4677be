using System.ComponentModel.DataAnnotations;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Observability;

/// <summary>Settings of the service-wide delivery gauges (section <c>Monitoring</c>).</summary>
public sealed class MonitoringOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Monitoring";

    /// <summary>
    /// Seconds a database sample of the backlog is reused (1–3600): however often metrics are
    /// collected, each process queries at most once per this interval.
    /// </summary>
    [Range(1, 3600)]
    public int BacklogSampleSeconds { get; set; } = 15;
}

/// <summary>One sample of the service-wide backlog.</summary>
/// <param name="Pending">Deliveries with status <c>pending</c>: created, no attempt finished yet.</param>
/// <param name="Retrying">Deliveries with status <c>retrying</c>: an attempt failed and another one waits.</param>
/// <param name="OldestPendingCreatedAt">Creation time of the oldest pending delivery that is not ordered (ordered ones wait for their
/// key's turn by design, decision 0014); null when none is pending.</param>
public sealed record BacklogSample(long Pending, long Retrying, DateTimeOffset? OldestPendingCreatedAt);

/// <summary>
/// Observable gauges of the service-wide backlog, on the meter <see cref="WebhookTelemetry.Name"/>:
/// <see cref="WaitingInstrument"/> and <see cref="OldestPendingAgeInstrument"/>. Both read one
/// database sample, taken when a collection finds the last one older than
/// <see cref="MonitoringOptions.BacklogSampleSeconds"/>: a burst of scrapes, or several exporters,
/// costs one query per interval, and none at all when nothing collects metrics. The query reads
/// only unfinished deliveries (the partial index <c>ix_webhook_deliveries_due</c>), so its cost
/// follows the backlog, not the table. When the database cannot be read the gauges report
/// nothing until the next interval rather than a stale number. Every replica reports the same
/// service-wide values: aggregate them with max, not sum.
/// </summary>
public sealed class DeliveryBacklogMetrics : IHostedService
{
    /// <summary>Gauge: unfinished deliveries, tagged <c>status</c> = <c>pending</c> or <c>retrying</c>.</summary>
    public const string WaitingInstrument = "webhooks.deliveries.waiting";

    /// <summary>
    /// Gauge: age in seconds of the oldest pending delivery, 0 when none is pending. Deliveries of ordered subscriptions (an
    /// <c>ordering_key</c>) are left out: one may wait behind a failing delivery of its key for hours, as asked (decision 0014).
    /// </summary>
    public const string OldestPendingAgeInstrument = "webhooks.deliveries.oldest_pending.age";

    private const string Query = $"""
        SELECT count(*) FILTER (WHERE status = '{DeliveryStatus.Pending}'),
               count(*) FILTER (WHERE status = '{DeliveryStatus.Retrying}'),
               min(created_at) FILTER (WHERE status = '{DeliveryStatus.Pending}' AND ordering_key IS NULL)
        FROM webhook_deliveries
        WHERE status IN ('{DeliveryStatus.Pending}', '{DeliveryStatus.Retrying}')
        """;

    private readonly MonitoringDatabase _database;
    private readonly TimeProvider _time;
    private readonly TimeSpan _interval;
    private readonly ILogger<DeliveryBacklogMetrics> _log;
    private readonly Lock _gate = new();
    private volatile Sampled? _last;
    private int _queries;

    /// <summary>Creates the gauges on a meter from <paramref name="meters"/> (disposed with the host).</summary>
    public DeliveryBacklogMetrics(IMeterFactory meters, MonitoringDatabase database, TimeProvider time, IOptions<MonitoringOptions> options,
        ILogger<DeliveryBacklogMetrics> log)
    {
        _database = database;
        _time = time;
        _interval = TimeSpan.FromSeconds(options.Value.BacklogSampleSeconds);
        _log = log;
        var meter = meters.Create(WebhookTelemetry.Name);
        meter.CreateObservableGauge(WaitingInstrument, ObserveWaiting, "{delivery}",
            "Deliveries not finished yet, service-wide, tagged status (pending: no attempt finished; retrying: waiting for the next attempt).");
        meter.CreateObservableGauge(OldestPendingAgeInstrument, ObserveOldestPendingAge, "s",
            "Age of the oldest pending delivery (created, no attempt finished), service-wide; 0 when none is pending.");
    }

    /// <summary>Database queries made so far (tests compare it across a burst of collections).</summary>
    internal int Queries => Volatile.Read(ref _queries);

    /// <summary>The current sample: the cached one while younger than the interval, else a new one (null if the database cannot be read).</summary>
    internal BacklogSample? Current()
    {
        if (_last is { } last && _time.GetElapsedTime(last.At) < _interval) return last.Sample;
        // One collection samples; others meanwhile get the previous sample instead of a second query.
        if (!_gate.TryEnter()) return _last?.Sample;
        try
        {
            if (_last is { } again && _time.GetElapsedTime(again.At) < _interval) return again.Sample;
            var sample = Sample();
            _last = new Sampled(sample, _time.GetTimestamp());
            return sample;
        }
        finally
        {
            _gate.Exit();
        }
    }

    private BacklogSample? Sample()
    {
        Interlocked.Increment(ref _queries);
        try
        {
            // Metric callbacks are synchronous; the data source's short timeouts bound the wait.
            using var command = _database.DataSource.CreateCommand(Query);
            using var reader = command.ExecuteReader();
            reader.Read();
            return new BacklogSample(reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetFieldValue<DateTimeOffset>(2));
        }
        catch (Exception ex)
        {
            _log.LogWarning(ex, "Could not sample the delivery backlog; the gauges report nothing for {Seconds} s", _interval.TotalSeconds);
            return null;
        }
    }

    private IEnumerable<Measurement<long>> ObserveWaiting()
    {
        if (Current() is not { } sample) return [];
        return
        [
            new(sample.Pending, new KeyValuePair<string, object?>("status", DeliveryStatus.Pending)),
            new(sample.Retrying, new KeyValuePair<string, object?>("status", DeliveryStatus.Retrying)),
        ];
    }

    private IEnumerable<Measurement<double>> ObserveOldestPendingAge()
    {
        if (Current() is not { } sample) return [];
        // Measured from the sampled creation time to now, so the age keeps growing between samples.
        var age = sample.OldestPendingCreatedAt is { } created ? Math.Max(0, (_time.GetUtcNow() - created).TotalSeconds) : 0;
        return [new(age)];
    }

    private sealed record Sampled(BacklogSample? Sample, long At);

    /// <summary>Nothing to start: registering as a hosted service only creates the gauges with the host.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
