using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Observability;

/// <summary>
/// Observable gauge <see cref="DaysAheadInstrument"/> on the meter <see cref="WebhookTelemetry.Name"/>:
/// how many whole days after today (UTC, by the database's clock) the day partitions of the
/// delivery history reach. <see cref="PartitionMaintenance"/> keeps it at
/// <see cref="PartitionOptions.AheadDays"/>; when it drops, partitions are not being made, and
/// when it reaches -1 new deliveries cannot be stored. Read from the catalogue, so it tells the
/// truth even when no worker runs. Sampled like the backlog gauges: at most one query per
/// <see cref="MonitoringOptions.BacklogSampleSeconds"/>, none when nothing collects, nothing
/// reported while the database cannot be read. Every replica reports the same value.
/// </summary>
public sealed class HistoryPartitionMetrics : IHostedService
{
    /// <summary>Gauge: whole days after today with partitions; 0 only today's, -1 not even today's.</summary>
    public const string DaysAheadInstrument = "webhooks.history.partitions.days_ahead";

    private readonly MonitoringDatabase _database;
    private readonly TimeProvider _time;
    private readonly TimeSpan _interval;
    private readonly ILogger<HistoryPartitionMetrics> _log;
    private readonly Lock _gate = new();
    private volatile Sampled? _last;

    /// <summary>Creates the gauge on a meter from <paramref name="meters"/> (disposed with the host).</summary>
    public HistoryPartitionMetrics(IMeterFactory meters, MonitoringDatabase database, TimeProvider time, IOptions<MonitoringOptions> options,
        ILogger<HistoryPartitionMetrics> log)
    {
        _database = database;
        _time = time;
        _interval = TimeSpan.FromSeconds(options.Value.BacklogSampleSeconds);
        _log = log;
        meters.Create(WebhookTelemetry.Name).CreateObservableGauge(DaysAheadInstrument, Observe, "d",
            "Whole days after today (UTC) for which the day partitions of deliveries and attempts exist; 0: only today's, -1: not even today's (new deliveries cannot be stored).");
    }

    /// <summary>The current value: the cached sample while younger than the interval, else a new one (null if the database cannot be read).</summary>
    internal int? Current()
    {
        if (_last is { } last && _time.GetElapsedTime(last.At) < _interval) return last.DaysAhead;
        if (!_gate.TryEnter()) return _last?.DaysAhead;
        try
        {
            if (_last is { } again && _time.GetElapsedTime(again.At) < _interval) return again.DaysAhead;
            var sample = Sample();
            _last = new Sampled(sample, _time.GetTimestamp());
            return sample;
        }
        finally
        {
            _gate.Exit();
        }
    }

    private int? Sample()
    {
        try
        {
            // Metric callbacks are synchronous; the data source's short timeouts bound the wait.
            using var command = _database.DataSource.CreateCommand(HistorySql.DaysAheadQuery);
            return Convert.ToInt32(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex)
        {
            _log.LogWarning(ex, "Could not read the history partitions; the gauge reports nothing for {Seconds} s", _interval.TotalSeconds);
            return null;
        }
    }

    private IEnumerable<Measurement<int>> Observe() => Current() is { } days ? [new(days)] : [];

    private sealed record Sampled(int? DaysAhead, long At);

    /// <summary>Nothing to start: registering as a hosted service only creates the gauge with the host.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
