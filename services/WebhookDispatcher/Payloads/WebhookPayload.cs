using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notely.Events;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// Builds the JSON body subscribers receive: <c>{"id", "event_type", "created_at", "data"}</c>,
/// snake_case, UTF-8. <c>data</c> holds the event's own fields; the envelope fields
/// (<c>event_id</c>, <c>user_id</c>, <c>occurred_at</c>) appear once, as <c>id</c> and <c>created_at</c>.
/// Every timestamp, <c>created_at</c> and those in <c>data</c>, is UTC in one format
/// (<see cref="UtcTimestamp.Format"/>, e.g. <c>2026-11-30T10:00:00.000Z</c>), whatever offset the
/// publisher used and whatever the host's time zone. Built once per event and stored, so every
/// attempt sends the same bytes.
/// </summary>
public static class WebhookPayload
{
    /// <summary>
    /// The serializer settings of payloads: snake_case names, nulls written, timestamps as
    /// <see cref="UtcTimestamp.Format"/>, non-ASCII text and characters such as <c>+</c> left as
    /// they are (the body is JSON for machines, never embedded in HTML).
    /// </summary>
    public static readonly JsonSerializerOptions JsonOptions = CreateOptions();

    /// <summary>The payload fields that are not the event's data, in the order they are written.</summary>
    public static readonly IReadOnlyList<string> EnvelopeFields = ["id", "event_type", "created_at", "data"];

    /// <summary>The contract properties (snake_case) that the envelope carries instead of <c>data</c>.</summary>
    public static readonly IReadOnlyList<string> ContractEnvelopeFields = ["event_id", "user_id", "occurred_at"];

    /// <summary>The payload of <paramref name="evt"/>.</summary>
    /// <exception cref="ArgumentException">The event's type is not in <see cref="EventCatalog"/>.</exception>
    public static string Build(INotelyEvent evt)
    {
        var info = EventCatalog.For(evt.GetType());
        var data = JsonSerializer.SerializeToNode(evt, evt.GetType(), JsonOptions)!.AsObject();
        foreach (var field in ContractEnvelopeFields)
            data.Remove(field);
        return Build(evt.EventId, info.Name, evt.OccurredAt, data);
    }

    /// <summary>A payload from its parts (the test event of <c>POST /api/webhooks/{id}/test</c> has no contract).</summary>
    public static string Build(Guid id, string eventType, DateTimeOffset createdAt, JsonObject data)
    {
        var payload = new JsonObject
        {
            ["id"] = id,
            ["event_type"] = eventType,
            ["created_at"] = UtcTimestamp.ToPayloadString(createdAt),
            ["data"] = data,
        };
        return payload.ToJsonString(JsonOptions);
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        options.Converters.Add(new PayloadTimestampConverter());
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
