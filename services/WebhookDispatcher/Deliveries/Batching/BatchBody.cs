using System.Text;
using System.Text.Json;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The body of a batch delivery (docs/webhooks.md, "Batched deliveries"):
/// <c>{"id": &lt;batch id&gt;, "event_type": "batch", "created_at": &lt;when it was formed&gt;, "events": [ … ]}</c>,
/// the events being the payloads exactly as single deliveries carry them, ordered by their
/// <c>created_at</c> (the event's occurred_at), then by delivery id. Built once when the batch is
/// formed and stored; every attempt sends those bytes.
/// </summary>
public static class BatchBody
{
    /// <summary>The <c>event_type</c> of a batch body and the <c>X-Webhook-Event</c> header of its requests.</summary>
    public const string EventType = "batch";

    /// <summary>
    /// Bytes of the body around its events: the envelope with an id and a timestamp (both fixed
    /// width, decision 0002) and no events. Each event after the first adds one byte (a comma).
    /// </summary>
    public static readonly int EnvelopeBytes = Encoding.UTF8.GetByteCount(Envelope(Guid.Empty, DateTimeOffset.UnixEpoch)) + 2;

    /// <summary>The body's size in bytes for members of <paramref name="memberBytes"/> bytes in all, <paramref name="count"/> of them.</summary>
    public static long Size(long memberBytes, int count) => EnvelopeBytes + memberBytes + Math.Max(0, count - 1);

    private static string Envelope(Guid id, DateTimeOffset createdAt) =>
        $"{{\"id\":\"{id}\",\"event_type\":\"{EventType}\",\"created_at\":\"{UtcTimestamp.ToPayloadString(createdAt)}\",\"events\":[";

    /// <summary>Builds the body: the payloads as given (each one JSON object, UTF-8), sorted as the type says.</summary>
    /// <param name="id">The batch's id (its delivery id, and its <c>webhook-id</c>).</param>
    /// <param name="createdAt">When the batch was formed (the database's clock).</param>
    /// <param name="members">Each member's delivery id and payload text.</param>
    /// <param name="inGivenOrder">Keep the members' order (an ordered subscription's, already in (occurred_at, id) order,
    /// which the payload's <c>created_at</c> text may not tell apart) instead of sorting them.</param>
    public static string Build(Guid id, DateTimeOffset createdAt, IEnumerable<(Guid DeliveryId, string Payload)> members, bool inGivenOrder = false)
    {
        var ordered = inGivenOrder
            ? members.Select(m => (m.DeliveryId, m.Payload)).ToList()
            : members.Select(m => (m.DeliveryId, m.Payload, At: CreatedAt(m.Payload)))
                .OrderBy(m => m.At, StringComparer.Ordinal).ThenBy(m => m.DeliveryId).Select(m => (m.DeliveryId, m.Payload)).ToList();
        var body = new StringBuilder(Envelope(id, createdAt), EnvelopeBytes + ordered.Sum(m => m.Payload.Length + 1));
        for (var i = 0; i < ordered.Count; i++)
        {
            if (i > 0) body.Append(',');
            body.Append(ordered[i].Payload);
        }
        return body.Append("]}").ToString();
    }

    /// <summary>
    /// The payload's top-level <c>created_at</c> as written (fixed-width UTC, so text order is time
    /// order), read without parsing the rest: it precedes <c>data</c>. Empty when absent.
    /// </summary>
    public static string CreatedAt(string payload)
    {
        var bytes = Encoding.UTF8.GetBytes(payload);
        var reader = new Utf8JsonReader(bytes);
        try
        {
            while (reader.Read())
            {
                if (reader.CurrentDepth != 1 || reader.TokenType != JsonTokenType.PropertyName) continue;
                if (reader.ValueTextEquals("created_at"u8))
                {
                    reader.Read();
                    return reader.TokenType == JsonTokenType.String ? reader.GetString()! : "";
                }
                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // Stored payloads are the dispatcher's own JSON; an unreadable one sorts first.
        }
        return "";
    }
}
