using System.Globalization;
using System.Text;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// The report's summary: for each calibration and scenario the median of its runs and the range
/// (min–max), and each throughput scenario's deliveries/s as a share of each calibration of the
/// same run (the median and range of those per-run shares).
/// </summary>
internal static class Summary
{
    /// <summary>Scenarios whose rate is the pipeline's own (not a fixed offered rate).</summary>
    private static readonly HashSet<string> Throughput = ["1to1", "1to10", "solo", "slow1", "slow10", "hang10"];

    public static string Write(Options options, List<Result> results, List<(int Run, CalibrationResult Result)> calibrations)
    {
        var text = new StringBuilder();
        var runs = options.Runs;
        text.AppendLine(CultureInfo.InvariantCulture, $"## Summary: median of {runs} run(s), **bold**, with the range (min–max)");
        text.AppendLine();
        if (calibrations.Count > 0)
        {
            text.AppendLine("What this machine's parts did in the same run:");
            text.AppendLine();
            text.AppendLine("| part | rate | what was measured |");
            text.AppendLine("|---|---|---|");
            foreach (var g in calibrations.GroupBy(c => c.Result.Name))
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {g.Key} | {Stats.Summary(g.Select(c => c.Result.PerSecond), "N0")} {g.First().Result.Unit} | {g.First().Result.Describe} |");
            text.AppendLine();
        }

        var measured = results.Where(r => r.Run > 0 && r.Scenario != "restart").ToList();
        text.AppendLine("| scenario | deliveries/s | p50 ms | p99 ms | p99 ms, first 5 s | max ms, first 5 s | dispatcher CPU-µs/delivery | dispatcher peak RSS MiB |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var g in measured.GroupBy(r => r.Scenario))
        {
            static double V(double? x) => x ?? double.NaN;
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {g.Key} | {Stats.Summary(g.Select(r => r.PerSecond), "N0")} | {Stats.Summary(g.Select(r => V(r.P50Ms)), "0.0")} | " +
                $"{Stats.Summary(g.Select(r => V(r.P99Ms)), "0.0")} | {Stats.Summary(g.Select(r => V(r.P99First5sMs)), "0.0")} | " +
                $"{Stats.Summary(g.Select(r => V(r.MaxFirst5sMs)), "0.0")} | {Stats.Summary(g.Select(r => r.DispatcherUsPerDelivery), "0")} | " +
                $"{Stats.Summary(g.Select(r => (double)r.PeakRssMiB), "0")} |");
        }
        text.AppendLine();

        foreach (var g in measured.Where(r => r.Metrics is not null).GroupBy(r => r.Scenario))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{g.Key}: median of {g.Count()} run(s), **bold**, with the range (min–max)");
            text.AppendLine();
            text.AppendLine("| figure | value |");
            text.AppendLine("|---|---|");
            foreach (var key in g.SelectMany(r => r.Metrics!.Keys).Distinct())
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {key} | {Stats.Summary(g.Select(r => r.Metrics!.GetValueOrDefault(key, double.NaN)), "0.##")} |");
            text.AppendLine();
        }

        var parts = calibrations.Select(c => c.Result.Name).Distinct().ToList();
        var throughput = measured.Where(r => Throughput.Contains(r.Scenario)).ToList();
        if (parts.Count > 0 && throughput.Count > 0)
        {
            text.AppendLine("Deliveries/s as a share of each part's rate in the same run (median of the per-run shares, range):");
            text.AppendLine();
            text.AppendLine("| scenario | deliveries/s | " + string.Join(" | ", parts.Select(p => $"% of {p} rate")) + " |");
            text.AppendLine("|---|---|" + string.Concat(parts.Select(_ => "---|")));
            foreach (var g in throughput.GroupBy(r => r.Scenario))
            {
                var cells = parts.Select(part => Stats.Summary(
                    g.Select(r => calibrations.FirstOrDefault(c => c.Run == r.Run && c.Result.Name == part).Result is { } c
                        ? 100 * r.PerSecond / c.PerSecond
                        : double.NaN), "0.0"));
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {g.Key} | {Stats.Summary(g.Select(r => r.PerSecond), "N0")} | {string.Join(" | ", cells)} |");
            }
            text.AppendLine();
            text.AppendLine("Each delivery of 1 → 1 is one event through a quorum queue, one signed POST and a few row writes; " +
                            "1 → 10 moves one event per ten deliveries through the queue.");
        }
        return text.ToString();
    }
}
