using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace WebhookDispatcher.Benchmarks;

/// <summary>Entry point (not top-level statements: the service's own <c>Program</c> is referenced).</summary>
internal static class BenchmarkEntry
{
    private static void Main(string[] args)
    {
        // No forced GC between iterations: with one request per iteration it would put a full
        // collection before every request, which a running service never sees; the GCs the
        // requests cause still land in the measurements.
        var config = DefaultConfig.Instance
            .AddJob(Job.Default.WithStrategy(RunStrategy.Monitoring).WithLaunchCount(1).WithWarmupCount(50).WithIterationCount(2000)
                .WithInvocationCount(1).WithUnrollFactor(1).WithGcForce(false))
            .AddColumn(StatisticColumn.P95, new P99Column());
        BenchmarkRunner.Run<ApiBenchmarks>(config, args);
    }
}

/// <summary>The 99th percentile of the measured iterations (one request each), in the summary's time unit.</summary>
internal sealed class P99Column : IColumn
{
    public string Id => "P99";
    public string ColumnName => "P99";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Statistics;
    public int PriorityInCategory => 10;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Time;
    public string Legend => "99th percentile of the request latencies";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) =>
        GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var statistics = summary[benchmarkCase]?.ResultStatistics;
        return statistics is null ? "NA" : $"{statistics.Percentiles.Percentile(99) / 1_000_000:0.000} ms";
    }
}
