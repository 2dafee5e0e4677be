using Microsoft.OpenApi;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Portal;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>The constraints of the API's schema properties, by JSON name (<see cref="Configure"/> applies them).</summary>
internal static partial class OpenApiDocumentation
{
    /// <summary>Constraints of a property, by its JSON name; applied wherever the name appears in the API's own schemas.</summary>
    private static readonly Dictionary<string, Action<OpenApiSchema>> Properties = new()
    {
        ["url"] = s => { s.Format = "uri"; s.MinLength = 1; s.MaxLength = WebhookSubscription.MaxUrlLength; },
        ["description"] = s => s.MaxLength = SubscriptionRequest.MaxDescriptionLength,
        ["retry_count"] = s => Range(s, 0, WebhookSubscription.MaxRetryCount, WebhookSubscription.DefaultRetryCount),
        ["timeout_seconds"] = s => Range(s, WebhookSubscription.MinTimeoutSeconds, WebhookSubscription.MaxTimeoutSeconds, WebhookSubscription.DefaultTimeoutSeconds),
        ["rate_limit_per_second"] = s =>
        {
            Range(s, 1, WebhookSubscription.MaxRateLimitPerSecond);
            s.Description = "At most this many attempts start in any one second, all replicas together; null (the default) for no limit. Deliveries over the limit wait without spending an attempt.";
        },
        // A delivery's event type: a catalog name, or "batch" for a batch delivery (docs/webhooks.md, "Batched deliveries").
        ["event_type"] = s => Enum(s, [.. EventTypeNames, BatchBody.EventType]),
        ["event_types"] = s =>
        {
            // A subscription's event types (not the catalog's list of EventTypeResponse objects).
            if (s.Items is not OpenApiSchema { Type: { } type } items || !type.HasFlag(JsonSchemaType.String)) return;
            s.MinItems = 1;
            s.UniqueItems = true;
            Enum(items, EventTypeNames);
        },
        ["status"] = s => Enum(s, DeliveryStatus.All),
        ["outcome"] = s => Enum(s, Outcomes),
        // A round has at most 1 + MaxRetryCount attempts; a manual retry adds a round, and these count across rounds.
        ["attempt_count"] = s => Range(s, 0, null),
        ["max_attempts"] = s => Range(s, 1, null),
        ["attempt_number"] = s => Range(s, 1, null),
        ["duration_ms"] = s => Range(s, 0, null),
        ["response_time_ms"] = s => Range(s, 0, null),
        ["status_code"] = s => Range(s, 100, 599),
        ["response_status_code"] = s => Range(s, 100, 599),
        ["response_body"] = s => s.MaxLength = WebhookDelivery.MaxStoredResponseChars,
        ["total_deliveries"] = s => Range(s, 0, null),
        ["successful_deliveries"] = s => Range(s, 0, null),
        ["failed_deliveries"] = s => Range(s, 0, null),
        ["success_rate"] = s => Range(s, 0, 1),
        ["total"] = s => Range(s, 0, null),
        ["limit"] = s => Range(s, 1, SubscriptionsApi.MaxLimit),
        ["offset"] = s => Range(s, 0, int.MaxValue),
        ["next_cursor"] = s => { s.MaxLength = 64; s.Pattern = "^[A-Za-z0-9_-]+$"; },
        ["disabled_reason"] = s =>
        {
            Enum(s, DisabledReasons.All);
            s.Description = "Why the subscription is inactive: endpoint_gone (it answered 410 Gone), failing (every delivery failed for days), owner (turned off through the API); null while active.";
        },
        ["secret"] = s => { s.Pattern = "^whsec_[A-Za-z0-9+/]{43}=$"; s.Description = "Signing secret in the Standard Webhooks form (whsec_ and 32 random bytes in base64), shown only in this answer."; },
        ["headers"] = s =>
        {
            s.MaxProperties = SubscriptionHeaders.MaxCount;
            if (s.AdditionalProperties is OpenApiSchema value) value.MaxLength = SubscriptionHeaders.MaxValueLength;
            s.Description = $"Custom headers sent with every attempt and the test send: at most {SubscriptionHeaders.MaxCount} names (HTTP tokens), " +
                            $"each value at most {SubscriptionHeaders.MaxValueLength} printable ASCII characters, {SubscriptionHeaders.MaxTotalLength} in all. " +
                            "webhook-*, X-Webhook-*, Host, Content-Type, Content-Length, Transfer-Encoding, Connection and other framing headers are refused. " +
                            "Values of credential headers (Authorization, names containing auth, key, token, secret, password, cookie …) are stored encrypted " +
                            $"and shown masked: their first four characters (values of 16 or more) and '{SubscriptionHeaders.MaskSuffix}'. " +
                            "PATCH replaces the whole set (null or {} removes all); a masked value sent back exactly as shown keeps the stored value.";
        },
        ["signature_scheme"] = s =>
        {
            Enum(s, [.. SignatureSchemes.All]);
            s.Description = "Which signatures requests carry: hmac (default; X-Webhook-Signature and webhook-signature v1), ed25519 " +
                            "(webhook-signature v1a only, verified with public_key) or both.";
        },
        ["ordering"] = s =>
        {
            // Never null: a request's null is refused (the request types' string? only means "absent").
            s.Type = JsonSchemaType.String;
            Enum(s, [.. SubscriptionOrdering.All]);
            s.Description = "How deliveries are ordered: none (default; independent), per_key (deliveries of events with the same ordering key " +
                            "start one at a time, in the order the events occurred; see each event type's ordering_key_path) or strict (one at a time " +
                            "for the whole subscription). A delivery that finally fails is skipped: the next of its key goes on. " +
                            "See docs/webhooks.md#ordered-delivery.";
        },
        ["ordering_key"] = s =>
        {
            s.MaxLength = 256;
            s.Description = "The key this delivery was ordered by: field:value of the event (e.g. task_id:…) under per_key, the empty string " +
                            "under strict, null when its subscription was not ordered when the event arrived.";
        },
        ["ordering_key_path"] = s =>
        {
            s.MaxLength = 64;
            s.Description = "Where ordering: per_key takes this event type's ordering key: a field of data (data.task_id …) or user_id (the event's user).";
        },
        ["public_key"] = s =>
        {
            s.Pattern = "^whpk_[A-Za-z0-9+/]{43}=$";
            s.Description = "The Ed25519 public key (Standard Webhooks whpk_ form) that verifies v1a signatures; null until a scheme with ed25519 is chosen. Rotates with the secret.";
        },
        ["name"] = s => Enum(s, EventTypeNames),
        ["category"] = s => Enum(s, [.. EventCatalog.All.Select(t => t.Category).Distinct()]),
        ["user_id"] = s => s.MaxLength = 256,
        ["window"] = s => { s.Pattern = DeliveryStatsApi.WindowPattern; s.MaxLength = 7; },
        ["succeeded"] = s => Range(s, 0, null),
        ["failed"] = s => Range(s, 0, null),
        ["cancelled"] = s => Range(s, 0, null),
        ["in_progress"] = s => Range(s, 0, null),
        ["pending"] = s => Range(s, 0, null),
        ["retrying"] = s => Range(s, 0, null),
        ["average_delivery_time_ms"] = s => Range(s, 0, null),
        // The portal (Portal/).
        ["expires_in_seconds"] = s => Range(s, PortalSessionsApi.MinExpiresInSeconds, PortalSessionsApi.MaxExpiresInSeconds, PortalSessionsApi.DefaultExpiresInSeconds),
        ["token"] = s => { s.Pattern = "^wdpl_[A-Za-z0-9_-]{43}$"; s.Description = "The link token: what follows #token= in the portal link."; },
        ["session_token"] = s => { s.Pattern = "^wdps_[A-Za-z0-9_-]{43}$"; s.Description = "Send as Authorization: Bearer <session_token> until expires_at; keep it in memory only."; },
        ["scope"] = s => Enum(s, [PortalClaims.UserScope, PortalClaims.OperatorScope]),
        ["user_id"] = s => s.MaxLength = AuthExtensions.MaxUserIdLength,
        ["operator"] = s => s.MaxLength = AuthExtensions.MaxUserIdLength,
        ["recovered"] = s => Range(s, 0, SubscriptionsApi.MaxRecoverPerCall),
        ["other"] = s => Range(s, 0, null),
        ["bucket_seconds"] = s => Range(s, 1, null),
        // One delivery's detail.
        ["payload"] = s =>
        {
            s.MaxLength = EventSizeLimit.MaxMaxEventBytes;
            s.Description = "The exact JSON body POSTed on every attempt, as a string (at most Delivery:MaxEventBytes of UTF-8); with a template, the event payload the body is rendered from. Null only when it is no longer stored.";
        },
        // Filters and templates (Shaping/).
        ["filter"] = s => s.Description = "Payload filter: an object of conditions over dotted paths of the payload (data.from, data.to[]) " +
            $"with $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists, $prefix, $contains, $and, $or, $not; at most {Shaping.PayloadFilter.MaxDepth} levels, " +
            $"{Shaping.PayloadFilter.MaxNodes} conditions and {Shaping.PayloadFilter.MaxBytes} bytes. An event it does not select makes no delivery. " +
            "Null: every event of the subscription's types. See docs/webhooks.md#filters.",
        ["template"] = s => s.Description = "What renders the request body: {\"builtin\": \"slack|discord|teams|text\"} or " +
            $"{{\"liquid\": \"…\" (at most {Shaping.WebhookTemplate.MaxLiquidChars} characters), \"content_type\": \"…\"}}; null: the payload JSON. See docs/webhooks.md#templates.",
        ["liquid"] = s => s.MaxLength = Shaping.WebhookTemplate.MaxLiquidChars,
        ["content_type"] = s => s.MaxLength = Shaping.WebhookTemplate.MaxContentTypeChars,
        ["body"] = s =>
        {
            s.MaxLength = Math.Max(Shaping.TemplateRenderer.MaxOutputChars, EventSizeLimit.MaxMaxEventBytes);
            s.Description = "The exact request body as UTF-8 text: the template's rendering, or the payload JSON without a template.";
        },
        // Batched deliveries (Deliveries/Batching/).
        ["batch"] = s => s.Description = "Batched deliveries: up to max_events events in one POST whose body is {\"id\", \"event_type\": \"batch\", " +
            "\"created_at\", \"events\": [the usual payloads]}, signed once; a batch is sent when it holds max_events, when the next event would take " +
            "its body past max_bytes, or max_wait_ms after its first event. Null (the default): one POST per event; PATCH batch: null turns it off " +
            "(events waiting then go one by one). max_bytes is from 1024 to the event payload cap (Delivery:MaxEventBytes, 262144 by default), " +
            "which is also its default. A batch of one event larger than max_bytes is sent alone, its body that event plus the envelope " +
            $"({BatchBody.EnvelopeBytes} bytes), so such a body is larger than max_bytes, and can be larger than the payload cap. " +
            "Not with a template. See docs/webhooks.md#batched-deliveries.",
        ["max_events"] = s => Range(s, 1, BatchLimits.MaxMaxEvents),
        ["max_wait_ms"] = s => Range(s, 0, BatchLimits.MaxMaxWaitMs, BatchLimits.DefaultMaxWaitMs),
        ["batch_id"] = s => s.Description = "For an event of a batched webhook: the batch delivery that carries it (null while it waits for one, status batched).",
        ["batch_size"] = s => { Range(s, 1, BatchLimits.MaxMaxEvents); s.Description = "For a batch delivery: how many events it carries."; },
        ["batch_events"] = s => s.Description = "For a batch delivery: its events (their own deliveries), in the order of its body.",
        ["max_depth"] = s => Range(s, 1, null),
        ["max_conditions"] = s => Range(s, 1, null),
        ["max_bytes"] = s => Range(s, 1, null),
        ["documentation"] = s => s.MaxLength = 256,
        // The operator audit trail.
        ["action"] = s => Enum(s, [OperatorAuditTrail.RetryDelivery, OperatorAuditTrail.RecoverDeliveries]),
        ["result"] = s => s.MaxLength = OperatorAuditTrail.MaxResultChars,
        ["payload_unavailable"] = s => { s.MaxLength = 512; s.Description = "Why payload is null, in plain words; null when the payload is there."; },
    };
}
