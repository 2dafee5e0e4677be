using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notely.Events;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Builds the JSON body subscribers receive: <c>{"id", "event_type", "created_at", "data"}</c>,
/// snake_case, UTF-8. <c>data</c> holds the event's own fields; the envelope fields
/// (<c>event_id</c>, <c>user_id</c>, <c>occurred_at</c>) appear once, as <c>id</c> and <c>created_at</c>.
/// Built once per event and stored, so every attempt sends the same bytes.
/// </summary>
public static class WebhookPayload
{
    /// <summary>
    /// The serializer settings of payloads: snake_case names, nulls written, non-ASCII text and
    /// characters such as <c>+</c> left as they are (the body is JSON for machines, never embedded in HTML).
    /// </summary>
    public static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static readonly string[] EnvelopeFields = ["event_id", "user_id", "occurred_at"];

    /// <summary>The payload of <paramref name="evt"/>.</summary>
    /// <exception cref="ArgumentException">The event's type is not in <see cref="EventCatalog"/>.</exception>
    public static string Build(INotelyEvent evt)
    {
        var info = EventCatalog.For(evt.GetType());
        var data = JsonSerializer.SerializeToNode(evt, evt.GetType(), JsonOptions)!.AsObject();
        foreach (var field in EnvelopeFields)
            data.Remove(field);
        var payload = new JsonObject
        {
            ["id"] = evt.EventId,
            ["event_type"] = info.Name,
            ["created_at"] = evt.OccurredAt.UtcDateTime,
            ["data"] = data,
        };
        return payload.ToJsonString(JsonOptions);
    }
}
