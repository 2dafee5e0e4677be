using System.Text.Json;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// A subscription's <c>batch</c> as the API shows and takes it (docs/webhooks.md, "Batched
/// deliveries"); null: batching off.
/// </summary>
/// <param name="MaxEvents">Most events in one POST, 1–100 (required).</param>
/// <param name="MaxWaitMs">How long the first event of a forming batch waits for more, 0–10,000 ms (default 1,000).</param>
/// <param name="MaxBytes">Largest batch body in bytes, from 1,024 to the event payload cap (<c>Delivery:MaxEventBytes</c>, the default);
/// an event larger than this alone goes in a batch of its own.</param>
public sealed record SubscriptionBatch(int MaxEvents, int MaxWaitMs = BatchLimits.DefaultMaxWaitMs, int MaxBytes = EventSizeLimit.DefaultMaxEventBytes)
{
    /// <summary>The request field.</summary>
    public const string Field = "batch";

    /// <summary>The stored columns as the API shows them; null when batching is off.</summary>
    public static SubscriptionBatch? Of(WebhookSubscription s) =>
        s.BatchMaxEvents is { } events ? new SubscriptionBatch(events, s.BatchMaxWaitMs ?? BatchLimits.DefaultMaxWaitMs, s.BatchMaxBytes ?? 0) : null;

    /// <summary>
    /// Reads <c>batch</c> from a request body: an object with <c>max_events</c> (required),
    /// <c>max_wait_ms</c> and <c>max_bytes</c>, or null (off). Errors go to <paramref name="error"/>
    /// keyed <c>batch.max_events</c> etc. Returns whether it was given and what it sets (null: off).
    /// </summary>
    /// <param name="body">The request body.</param>
    /// <param name="maxEventBytes">The event payload cap: the largest and the default <c>max_bytes</c>.</param>
    /// <param name="error">Collects errors by field.</param>
    public static (bool Given, SubscriptionBatch? Batch) Read(JsonElement body, int maxEventBytes, Action<string, string> error)
    {
        if (!body.TryGetProperty(Field, out var b)) return (false, null);
        if (b.ValueKind == JsonValueKind.Null) return (true, null);
        if (b.ValueKind != JsonValueKind.Object)
        {
            error(Field, "Must be an object ({\"max_events\": 1–100, \"max_wait_ms\": …, \"max_bytes\": …}) or null (off).");
            return (true, null);
        }
        var valid = true;
        foreach (var p in b.EnumerateObject().Where(p => p.Name is not ("max_events" or "max_wait_ms" or "max_bytes")))
        {
            error($"{Field}.{p.Name}", "Unknown field. Accepted fields: max_events, max_wait_ms, max_bytes.");
            valid = false;
        }
        int? Number(string name, int min, int max, int? fallback)
        {
            if (!b.TryGetProperty(name, out var v))
            {
                if (fallback is null) { error($"{Field}.{name}", "Required."); valid = false; }
                return fallback;
            }
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n >= min && n <= max) return n;
            error($"{Field}.{name}", $"Must be a whole JSON number from {min} to {max}.");
            valid = false;
            return null;
        }
        var events = Number("max_events", 1, BatchLimits.MaxMaxEvents, null);
        var wait = Number("max_wait_ms", 0, BatchLimits.MaxMaxWaitMs, BatchLimits.DefaultMaxWaitMs);
        var bytes = Number("max_bytes", BatchLimits.MinMaxBytes, maxEventBytes, maxEventBytes);
        return valid ? (true, new SubscriptionBatch(events!.Value, wait!.Value, bytes!.Value)) : (true, null);
    }

    /// <summary>The problem of a batch beside a template: a template renders one event, a batch carries several.</summary>
    public const string WithTemplateProblem =
        "A batched webhook cannot have a template: a template renders one event, a batch carries several. Remove the template (template: null) or the batch (batch: null).";
}
