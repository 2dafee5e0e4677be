using System.Diagnostics;
using System.Diagnostics.Metrics;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Observability;

/// <summary>The dispatcher's own <see cref="ActivitySource"/> and <see cref="Meter"/>, both named <see cref="Name"/>.</summary>
public static class WebhookTelemetry
{
    /// <summary>Name of the activity source and the meter.</summary>
    public const string Name = "WebhookDispatcher";

    /// <summary>Spans of webhook attempts.</summary>
    public static readonly ActivitySource Source = new(Name);

    private static readonly Meter Meter = new(Name);

    /// <summary>Events fanned out, tagged <c>event_type</c>.</summary>
    public static readonly Counter<long> EventsFannedOut = Meter.CreateCounter<long>("webhooks.events.fanned_out", "{event}");

    /// <summary>Batches formed (Deliveries/Batching/): one POST each, counted by its attempts like any delivery.</summary>
    public static readonly Counter<long> BatchesFormed = Meter.CreateCounter<long>("webhooks.batches.formed", "{batch}");

    /// <summary>Events put into batches (members of the batches formed).</summary>
    public static readonly Counter<long> BatchedEvents = Meter.CreateCounter<long>("webhooks.batches.events", "{event}");

    private static readonly Counter<long> Attempts = Meter.CreateCounter<long>("webhooks.attempts", "{attempt}",
        "Webhook attempts, tagged with their outcome.");

    private static readonly Histogram<double> AttemptDuration = Meter.CreateHistogram<double>("webhooks.attempt.duration", "s",
        "Duration of webhook attempts including the body read.");

    /// <summary>Counts one attempt and its duration (seconds), tagged <c>outcome</c>.</summary>
    public static void RecordAttempt(WebhookResponse response)
    {
        var outcome = new KeyValuePair<string, object?>("outcome", response.Outcome);
        Attempts.Add(1, outcome);
        AttemptDuration.Record(response.Duration.TotalSeconds, outcome);
    }
}
