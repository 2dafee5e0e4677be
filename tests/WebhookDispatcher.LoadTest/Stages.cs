using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// Where the latency of a run went, second by second: each event's publish and arrival (this
/// process's clock) joined with its delivery row's <c>created_at</c> (the fan-out's clock reading
/// just before its batch's INSERT) and <c>first_attempt_at</c> (the scheduler pass that claimed it,
/// read at the start of that pass). All clocks are this machine's, so the stages line up to a
/// millisecond or so.
/// </summary>
internal static class Stages
{
    /// <summary>The wall clock and the Stopwatch read together at start, to place Stopwatch timestamps on the wall clock.</summary>
    private static readonly (DateTimeOffset Utc, long Ticks) Anchor = (DateTimeOffset.UtcNow, Stopwatch.GetTimestamp());

    /// <summary>Called once at start so the anchor is taken early.</summary>
    public static void Init() => _ = Anchor;

    private static DateTimeOffset ToUtc(long timestamp) => Anchor.Utc + Stopwatch.GetElapsedTime(Anchor.Ticks, timestamp);

    /// <summary>
    /// A markdown table: per second of publishing (the first <paramref name="detailSeconds"/>, then
    /// the rest together), p50 / p99 in ms of publish → row created (broker, consumer, fan-out
    /// gather), row created → claim pass (insert, hand-over, scheduler wake-up), claim pass → POST
    /// arrived (claim statement, signing, HTTP) and the whole.
    /// </summary>
    public static async Task<string> ReportAsync(NpgsqlDataSource db, Guid subscription, IReadOnlyList<Arrival> arrivals,
        IReadOnlyDictionary<Guid, long> confirmedAt, long start, int detailSeconds)
    {
        var rows = new Dictionary<Guid, (DateTimeOffset Created, DateTimeOffset? Claimed)>();
        await using (var cmd = db.CreateCommand("SELECT event_id, created_at, first_attempt_at FROM webhook_deliveries WHERE subscription_id = $1"))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = subscription });
            await using var r = await cmd.ExecuteReaderAsync();
            while (await r.ReadAsync())
                rows[r.GetGuid(0)] = (r.GetFieldValue<DateTimeOffset>(1), r.IsDBNull(2) ? null : r.GetFieldValue<DateTimeOffset>(2));
        }
        var samples = new List<(int Second, double Fan, double Sched, double Post, double Total, double Confirm)>();
        foreach (var a in arrivals.Where(a => a.PublishedAt >= start))
        {
            if (!rows.TryGetValue(a.EventId, out var row) || row.Claimed is not { } claimed) continue;
            var published = ToUtc(a.PublishedAt);
            var arrived = ToUtc(a.ArrivedAt);
            var second = (int)Stopwatch.GetElapsedTime(start, a.PublishedAt).TotalSeconds;
            samples.Add((Math.Min(second, detailSeconds), (row.Created - published).TotalMilliseconds, (claimed - row.Created).TotalMilliseconds,
                (arrived - claimed).TotalMilliseconds, a.LatencyMs,
                confirmedAt.TryGetValue(a.EventId, out var confirmed) ? Stopwatch.GetElapsedTime(a.PublishedAt, confirmed).TotalMilliseconds : double.NaN));
        }
        var text = new StringBuilder();
        text.AppendLine("| published in second | events | publish → confirmed (load generator) p50 / p99 | publish → row p50 / p99 | row → claim pass p50 / p99 | claim pass → POST arrived p50 / p99 | total p50 / p99 / max |");
        text.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var g in samples.GroupBy(s => s.Second).OrderBy(g => g.Key))
        {
            var label = g.Key < detailSeconds ? $"{g.Key}–{g.Key + 1} s" : $"{detailSeconds} s – end";
            string Pair(Func<(int, double, double, double, double, double), double> f)
            {
                var v = g.Select(f).Where(x => !double.IsNaN(x)).Order().ToArray();
                return string.Create(CultureInfo.InvariantCulture, $"{Stats.Percentile(v, 0.5):0.0} / {Stats.Percentile(v, 0.99):0.0}");
            }
            var total = g.Select(s => s.Total).Order().ToArray();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {label} | {g.Count()} | {Pair(s => s.Item6)} | {Pair(s => s.Item2)} | {Pair(s => s.Item3)} | {Pair(s => s.Item4)} | {Stats.Percentile(total, 0.5):0.0} / {Stats.Percentile(total, 0.99):0.0} / {total[^1]:0.0} |");
        }
        return text.ToString();
    }
}

/// <summary>Percentiles and medians.</summary>
internal static class Stats
{
    /// <summary>The nearest-rank <paramref name="q"/>-quantile of sorted values; NaN for none.</summary>
    public static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    /// <summary>The median (the mean of the middle two for an even count); NaN for none.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Where(x => !double.IsNaN(x)).Order().ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>"median (min–max)" of <paramref name="values"/>, formatted with <paramref name="format"/>; "–" for none.</summary>
    public static string Summary(IEnumerable<double> values, string format)
    {
        var v = values.Where(x => !double.IsNaN(x)).ToArray();
        if (v.Length == 0) return "–";
        var median = Median(v).ToString(format, CultureInfo.InvariantCulture);
        return v.Length == 1 ? median
            : $"**{median}** ({v.Min().ToString(format, CultureInfo.InvariantCulture)}–{v.Max().ToString(format, CultureInfo.InvariantCulture)})";
    }
}
