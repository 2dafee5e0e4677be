using System.Collections.Frozen;
using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>One entry of <c>GET /api/webhooks/event-types</c>.</summary>
/// <param name="Name">The wire name, e.g. <c>email.received</c>.</param>
/// <param name="Category">The part of the name before the dot.</param>
/// <param name="Description">When the event is sent.</param>
/// <param name="Schema">JSON Schema (draft 2020-12) of the webhook payload of this type, generated from the contract.</param>
/// <param name="Example">An example payload of this type, generated from the contract; it validates against <paramref name="Schema"/>.</param>
public sealed record EventTypeResponse(string Name, string Category, string Description, JsonObject Schema, JsonObject Example)
{
    private static readonly FrozenDictionary<string, EventTypeResponse> All = EventCatalog.All
        .ToFrozenDictionary(t => t.Name, t => new EventTypeResponse(t.Name, t.Category, t.Description,
            EventSchemas.PayloadSchema(t), EventSchemas.ExamplePayload(t).AsObject()) { OrderingKeyPath = t.OrderingKey }, StringComparer.Ordinal);

    /// <summary>
    /// Where a subscription with <c>ordering: per_key</c> takes an event's ordering key: a field of <c>data</c>
    /// (<c>data.task_id</c> …) or <c>user_id</c> (the event's user). Deliveries whose events have the same key (that field's name
    /// and value) start one at a time, in the order the events occurred.
    /// </summary>
    public string OrderingKeyPath { get; init; } = EventTypeInfo.UserKey;

    /// <summary>The catalog, in catalog order, each entry built once.</summary>
    public static IReadOnlyList<EventTypeResponse> Catalog { get; } = [.. EventCatalog.All.Select(t => All[t.Name])];

    /// <summary>The entry of <paramref name="name"/>, or null for an unknown name.</summary>
    public static EventTypeResponse? Find(string name) => All.GetValueOrDefault(name);
}

/// <summary>The event-type catalog.</summary>
public sealed record EventTypesResponse(IReadOnlyList<EventTypeResponse> EventTypes)
{
    /// <summary>The payload filter language subscriptions' <c>filter</c> uses.</summary>
    public FilterSyntaxResponse? Filters { get; init; }

    /// <summary>The built-in templates a subscription's <c>template</c> may name.</summary>
    public IReadOnlyList<BuiltInTemplateResponse>? Templates { get; init; }
}

/// <summary>Delivery statistics of a subscription (deliveries that reached a final state).</summary>
public sealed record SubscriptionStatistics(
    long TotalDeliveries,
    long SuccessfulDeliveries,
    long FailedDeliveries,
    double? SuccessRate,
    DateTimeOffset? LastDeliveryAt,
    DateTimeOffset? LastSuccessAt,
    DateTimeOffset? LastFailureAt);

/// <summary>A subscription as the API shows it: never its secret.</summary>
/// <remarks>
/// <c>disabled_reason</c> says why an inactive subscription is off: <c>endpoint_gone</c> (it
/// answered 410 Gone), <c>failing</c> (every delivery failed for days) or <c>owner</c> (turned
/// off through the API); null while active. <c>disabled_at</c> is when. <c>headers</c> shows
/// credential values masked (<see cref="SubscriptionHeaders.MaskSuffix"/>); <c>public_key</c> is
/// the Ed25519 key (<c>whpk_…</c>) that verifies <c>v1a</c> signatures, null until a scheme with
/// Ed25519 is chosen.
/// </remarks>
public sealed record SubscriptionResponse(
    Guid Id,
    string Url,
    IReadOnlyList<string> EventTypes,
    string? Description,
    bool IsActive,
    int RetryCount,
    int TimeoutSeconds,
    int? RateLimitPerSecond,
    string? DisabledReason,
    DateTimeOffset? DisabledAt,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    SubscriptionStatistics Statistics,
    IReadOnlyDictionary<string, string>? Headers = null,
    string SignatureScheme = SignatureSchemes.Hmac,
    string? PublicKey = null)
{
    /// <summary>The payload filter (docs/webhooks.md, "Filters"); null: every event of its types.</summary>
    public JsonNode? Filter { get; init; }

    /// <summary>How its deliveries are ordered: <c>none</c>, <c>per_key</c> or <c>strict</c> (docs/webhooks.md, "Ordered delivery").</summary>
    public string Ordering { get; init; } = Deliveries.SubscriptionOrdering.None;

    /// <summary>The template (docs/webhooks.md, "Templates"); null: the payload JSON is sent.</summary>
    public JsonNode? Template { get; init; }

    /// <summary>Batched deliveries (docs/webhooks.md, "Batched deliveries"); null: one POST per event.</summary>
    public SubscriptionBatch? Batch { get; init; }

    /// <summary>Maps the entity, leaving the secret and private key out and masking credential headers.</summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured main keys do not open.</exception>
    public static SubscriptionResponse From(WebhookSubscription s, SecretSealer sealer) => new(s.Id, s.Url, s.EventTypes, s.Description, s.IsActive, s.RetryCount,
        s.TimeoutSeconds, s.RateLimitPerSecond, s.DisabledReason, s.DisabledAt, s.CreatedAt, s.UpdatedAt, new SubscriptionStatistics(s.TotalDeliveries, s.SuccessfulDeliveries, s.FailedDeliveries,
            s.TotalDeliveries == 0 ? null : Math.Round((double)s.SuccessfulDeliveries / s.TotalDeliveries, 4),
            s.LastDeliveryAt, s.LastSuccessAt, s.LastFailureAt),
        SubscriptionHeaders.Masked(s.Headers, sealer), s.SignatureScheme, PublicKeyOf(s.SigningKey, sealer))
    {
        Filter = Shaping.ShapingFields.Node(s.Filter),
        Template = Shaping.ShapingFields.Node(s.Template),
        Ordering = s.Ordering,
        Batch = SubscriptionBatch.Of(s),
    };

    /// <summary>The <c>whpk_</c> public key of a stored (sealed) private key; null for none.</summary>
    public static string? PublicKeyOf(string? signingKey, SecretSealer sealer) =>
        signingKey is null ? null : WebhookSigner.PublicKey(sealer.Unseal(signingKey));
}

/// <summary>The answer to a create: the subscription and, this once, its secret.</summary>
public sealed record CreatedSubscriptionResponse(
    Guid Id,
    string Url,
    IReadOnlyList<string> EventTypes,
    string? Description,
    bool IsActive,
    int RetryCount,
    int TimeoutSeconds,
    int? RateLimitPerSecond,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    string Secret,
    IReadOnlyDictionary<string, string>? Headers = null,
    string SignatureScheme = SignatureSchemes.Hmac,
    string? PublicKey = null)
{
    /// <summary>The payload filter; null: every event of its types.</summary>
    public JsonNode? Filter { get; init; }

    /// <summary>How its deliveries are ordered: <c>none</c>, <c>per_key</c> or <c>strict</c>.</summary>
    public string Ordering { get; init; } = Deliveries.SubscriptionOrdering.None;

    /// <summary>The template; null: the payload JSON is sent.</summary>
    public JsonNode? Template { get; init; }

    /// <summary>Batched deliveries; null: one POST per event.</summary>
    public SubscriptionBatch? Batch { get; init; }
}

/// <summary>A page of a list, newest first.</summary>
/// <param name="Data">The items.</param>
/// <param name="Total">Items matching the filters now, over all pages; null on the delivery list, which never counts (keyset pages cost the same at any depth).</param>
/// <param name="Limit">Page size used.</param>
/// <param name="Offset">Items skipped when paging by offset; null when paging by cursor.</param>
/// <param name="HasMore">Whether items follow this page.</param>
/// <param name="NextCursor">Pass as <c>cursor</c> to get the items after this page; null when <paramref name="HasMore"/> is false.</param>
public sealed record PageResponse<T>(IReadOnlyList<T> Data, int? Total, int Limit, int? Offset, bool HasMore, string? NextCursor);

/// <summary>One HTTP attempt of a delivery.</summary>
public sealed record AttemptResponse(
    int AttemptNumber, DateTimeOffset AttemptedAt, int DurationMs, int? StatusCode, string Outcome, string? ErrorMessage, string? ResponseExcerpt);

/// <summary>A delivery; <see cref="Attempts"/> only when asked for with <c>include_attempts=true</c>.</summary>
public sealed record DeliveryResponse(
    Guid Id,
    Guid SubscriptionId,
    string EventType,
    Guid EventId,
    string Status,
    int AttemptCount,
    int MaxAttempts,
    int? ResponseStatusCode,
    string? ResponseBody,
    string? ErrorMessage,
    DateTimeOffset CreatedAt,
    DateTimeOffset? FirstAttemptAt,
    DateTimeOffset? LastAttemptAt,
    DateTimeOffset? CompletedAt,
    DateTimeOffset? NextRetryAt,
    IReadOnlyList<AttemptResponse>? Attempts)
{
    /// <summary>
    /// The key the delivery was ordered by (decision 0014): the event's key (e.g. <c>task_id:…</c>) under <c>per_key</c>, the empty
    /// string under <c>strict</c>, null when its subscription was not ordered when the event arrived.
    /// </summary>
    public string? OrderingKey { get; init; }

    /// <summary>
    /// For an event of a batched subscription: the batch delivery that carries it (null while it
    /// waits for one, status <c>batched</c>); absent for other deliveries.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public Guid? BatchId { get; init; }

    /// <summary>For a batch delivery (<c>event_type</c> <c>batch</c>): how many events it carries; absent for other deliveries.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public int? BatchSize { get; init; }

    /// <summary>Maps the entity; attempts when loaded and asked for.</summary>
    public static DeliveryResponse From(WebhookDelivery d, bool withAttempts) => new(d.Id, d.SubscriptionId, d.EventType, d.EventId, d.Status,
        d.AttemptCount, d.MaxAttempts, d.ResponseStatusCode, d.ResponseBody, d.ErrorMessage, d.CreatedAt, d.FirstAttemptAt, d.LastAttemptAt,
        d.CompletedAt, d.NextRetryAt,
        withAttempts
            ? d.Attempts.OrderBy(a => a.AttemptNumber)
                .Select(a => new AttemptResponse(a.AttemptNumber, a.AttemptedAt, a.DurationMs, a.StatusCode, a.Outcome, a.ErrorMessage, a.ResponseExcerpt))
                .ToList()
            : null)
    {
        OrderingKey = d.OrderingKey,
        BatchId = d.BatchId,
        BatchSize = d.BatchSize,
    };
}

/// <summary>
/// One delivery with its attempts and its payload (<c>GET /api/webhooks/{id}/deliveries/{deliveryId}</c>
/// and the operator's detail): the fields of <see cref="DeliveryResponse"/>, its attempts, and its payload.
/// </summary>
/// <param name="Id">The delivery's id (also sent as <c>X-Webhook-Delivery</c>).</param>
/// <param name="SubscriptionId">The subscription it is for.</param>
/// <param name="EventType">Event type name, e.g. <c>email.received</c>.</param>
/// <param name="EventId">The event's id (the payload's <c>id</c> and the <c>webhook-id</c> header).</param>
/// <param name="Status">pending, retrying, success, failed or cancelled; batched for an event of a batched webhook waiting for its batch or in one under way.</param>
/// <param name="AttemptCount">Attempts started so far.</param>
/// <param name="MaxAttempts">Attempts allowed, counting the rounds of manual retries.</param>
/// <param name="ResponseStatusCode">HTTP status of the last attempt, if one was received.</param>
/// <param name="ResponseBody">The start of the last response body (at most 4,096 characters).</param>
/// <param name="ErrorMessage">Why the last attempt failed, if it did.</param>
/// <param name="CreatedAt">Creation time (UTC).</param>
/// <param name="FirstAttemptAt">Start of the first attempt (UTC).</param>
/// <param name="LastAttemptAt">Start of the last attempt (UTC).</param>
/// <param name="CompletedAt">When it reached a final status (UTC).</param>
/// <param name="NextRetryAt">When the next attempt is due (UTC); null once final.</param>
/// <param name="Attempts">The attempts, oldest first.</param>
/// <param name="Payload">
/// The exact JSON body POSTed on every attempt, as text (at most the event payload cap, <c>Delivery:MaxEventBytes</c>, 256 KiB by default);
/// with a template, the event payload the body is rendered from (<c>…/preview</c> shows the rendering); null
/// only when it is no longer stored (<paramref name="PayloadUnavailable"/> says so).
/// </param>
/// <param name="PayloadUnavailable">Why <paramref name="Payload"/> is null, in plain words; null when it is there.</param>
public sealed record DeliveryDetailResponse(
    Guid Id,
    Guid SubscriptionId,
    string EventType,
    Guid EventId,
    string Status,
    int AttemptCount,
    int MaxAttempts,
    int? ResponseStatusCode,
    string? ResponseBody,
    string? ErrorMessage,
    DateTimeOffset CreatedAt,
    DateTimeOffset? FirstAttemptAt,
    DateTimeOffset? LastAttemptAt,
    DateTimeOffset? CompletedAt,
    DateTimeOffset? NextRetryAt,
    IReadOnlyList<AttemptResponse> Attempts,
    string? Payload,
    string? PayloadUnavailable)
{
    /// <summary>The key the delivery was ordered by; see <see cref="DeliveryResponse.OrderingKey"/>.</summary>
    public string? OrderingKey { get; init; }

    /// <summary>For an event of a batched subscription: the batch delivery that carries it (null while it waits); absent otherwise.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public Guid? BatchId { get; init; }

    /// <summary>For a batch delivery: how many events it carries; absent otherwise.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public int? BatchSize { get; init; }

    /// <summary>For a batch delivery: its events (member deliveries), in the order of its body; absent otherwise.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<BatchEventResponse>? BatchEvents { get; init; }

    /// <summary>Maps the entity (its attempts loaded) and its payload as <see cref="DeliveryPayloadReader"/> read it.</summary>
    public static DeliveryDetailResponse From(WebhookDelivery d, string? payload)
    {
        var x = DeliveryResponse.From(d, withAttempts: true);
        return new(x.Id, x.SubscriptionId, x.EventType, x.EventId, x.Status, x.AttemptCount, x.MaxAttempts, x.ResponseStatusCode,
            x.ResponseBody, x.ErrorMessage, x.CreatedAt, x.FirstAttemptAt, x.LastAttemptAt, x.CompletedAt, x.NextRetryAt, x.Attempts!,
            payload, payload is null ? DeliveryPayloadReader.GoneText : null)
        {
            OrderingKey = x.OrderingKey,
            BatchId = d.BatchId,
            BatchSize = d.BatchSize,
        };
    }
}

/// <summary>One event of a batch delivery, as its detail lists them.</summary>
/// <param name="DeliveryId">The event's own (member) delivery.</param>
/// <param name="EventId">The event's id (its payload's <c>id</c> in the batch body).</param>
/// <param name="EventType">Its type.</param>
public sealed record BatchEventResponse(Guid DeliveryId, Guid EventId, string EventType);

/// <summary>The outcome of <c>POST /api/webhooks/{id}/test</c>.</summary>
/// <param name="Success">Whether the endpoint answered 2xx.</param>
/// <param name="StatusCode">The HTTP status, if an answer arrived.</param>
/// <param name="ResponseTimeMs">Time to the end of the answer or the failure, in milliseconds.</param>
/// <param name="Error">Why it failed, if it did.</param>
public sealed record TestResponse(bool Success, int? StatusCode, long ResponseTimeMs, string? Error);

/// <summary>The answer to a secret rotation: the new secret, shown this once.</summary>
/// <param name="Secret">The new secret.</param>
/// <param name="PreviousSecretExpiresAt">Until when the old secret (and the old Ed25519 key) keeps signing beside it.</param>
/// <param name="PublicKey">The new Ed25519 public key (<c>whpk_…</c>) when the webhook has one; the old key's <c>v1a</c> signatures continue until <paramref name="PreviousSecretExpiresAt"/>.</param>
public sealed record RotatedSecretResponse(string Secret, DateTimeOffset PreviousSecretExpiresAt, string? PublicKey = null);
