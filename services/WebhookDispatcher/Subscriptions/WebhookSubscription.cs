namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// A user's registration of an endpoint URL for a set of event types (table
/// <c>webhook_subscriptions</c>).
/// </summary>
public sealed class WebhookSubscription
{
    /// <summary>Default number of retries after the first attempt.</summary>
    public const int DefaultRetryCount = 3;

    /// <summary>Largest allowed <see cref="RetryCount"/>.</summary>
    public const int MaxRetryCount = 10;

    /// <summary>Default total deadline of one attempt, in seconds.</summary>
    public const int DefaultTimeoutSeconds = 10;

    /// <summary>Smallest allowed <see cref="TimeoutSeconds"/>.</summary>
    public const int MinTimeoutSeconds = 1;

    /// <summary>Largest allowed <see cref="TimeoutSeconds"/>.</summary>
    public const int MaxTimeoutSeconds = 60;

    /// <summary>Longest accepted <see cref="Url"/>, in characters.</summary>
    public const int MaxUrlLength = 2048;

    /// <summary>Primary key.</summary>
    public Guid Id { get; set; }

    /// <summary>Owner: the opaque user id of the events and the JWT subject of the API.</summary>
    public required string UserId { get; set; }

    /// <summary>Absolute http(s) URL that receives the POSTs; at most <see cref="MaxUrlLength"/> characters.</summary>
    public required string Url { get; set; }

    /// <summary>Event type names (<c>email.received</c> …) this subscription receives; never empty.</summary>
    public required List<string> EventTypes { get; set; }

    /// <summary>
    /// Signing secret, sealed at rest (<see cref="Security.SecretSealer"/>; plain text in rows from before sealing). In the Standard Webhooks form <c>whsec_&lt;base64&gt;</c>, the decoded bytes key
    /// <c>webhook-signature</c>; the UTF-8 bytes of the whole string key <c>X-Webhook-Signature</c>.
    /// </summary>
    public required string Secret { get; set; }

    /// <summary>The secret replaced by the last rotation; it keeps signing until <see cref="PreviousSecretExpiresAt"/>.</summary>
    public string? PreviousSecret { get; set; }

    /// <summary>End of the rotation grace period (UTC); after it <see cref="PreviousSecret"/> is ignored.</summary>
    public DateTimeOffset? PreviousSecretExpiresAt { get; set; }

    /// <summary>
    /// Custom headers sent with every attempt: a JSON object of names to values, credential values
    /// sealed (<see cref="SubscriptionHeaders"/>); null for none.
    /// </summary>
    public string? Headers { get; set; }

    /// <summary>
    /// How its deliveries are ordered (<see cref="Deliveries.SubscriptionOrdering"/>): <c>none</c> (independent, the default),
    /// <c>per_key</c> (one at a time per the event's ordering key, in publish order) or <c>strict</c> (one at a time for the subscription).
    /// </summary>
    public string Ordering { get; set; } = Deliveries.SubscriptionOrdering.None;

    /// <summary>Which signatures its requests carry: <see cref="Security.SignatureSchemes"/> (<c>hmac</c>, <c>ed25519</c> or <c>both</c>).</summary>
    public string SignatureScheme { get; set; } = Security.SignatureSchemes.Hmac;

    /// <summary>Its Ed25519 private key (<c>whsk_…</c>, sealed); made when a scheme with Ed25519 is first chosen, null before.</summary>
    public string? SigningKey { get; set; }

    /// <summary>The private key replaced by the last rotation (sealed); it signs beside the new one until <see cref="PreviousSecretExpiresAt"/>.</summary>
    public string? PreviousSigningKey { get; set; }

    /// <summary>Free text shown to the owner.</summary>
    public string? Description { get; set; }

    /// <summary>Whether new events fan out to this subscription. A 410 Gone answer sets it to false.</summary>
    public bool IsActive { get; set; } = true;

    /// <summary>Retries after the first attempt, 0 to <see cref="MaxRetryCount"/>: a delivery gets 1 + RetryCount attempts.</summary>
    public int RetryCount { get; set; } = DefaultRetryCount;

    /// <summary>Total deadline of one attempt including the response body read, in seconds (1–60).</summary>
    public int TimeoutSeconds { get; set; } = DefaultTimeoutSeconds;

    /// <summary>Largest allowed <see cref="RateLimitPerSecond"/>.</summary>
    public const int MaxRateLimitPerSecond = 10_000;

    /// <summary>
    /// At most this many attempts start in any one second (1–10000, all replicas together); null
    /// for no limit. Deliveries over the limit wait, without spending an attempt.
    /// </summary>
    public int? RateLimitPerSecond { get; set; }

    /// <summary>
    /// Payload filter as its owner gave it (compact JSON, at most <see cref="Shaping.PayloadFilter.MaxBytes"/>
    /// bytes); null: every event of its types. See <see cref="Shaping.PayloadFilter"/>.
    /// </summary>
    public string? Filter { get; set; }

    /// <summary>The SQL/JSON path predicate (PostgreSQL <c>jsonpath</c>) of <see cref="Filter"/>, evaluated by the fan-out's INSERT; null with it.</summary>
    public string? FilterPath { get; set; }

    /// <summary>
    /// The template that renders the request body (compact JSON of a <see cref="Shaping.WebhookTemplate"/>);
    /// null: the payload JSON as it is.
    /// </summary>
    public string? Template { get; set; }

    /// <summary>
    /// Batched deliveries (Deliveries/Batching/, docs/decisions/0015): at most this many events
    /// (1–100) in one POST; null: batching is off and every event is its own delivery. With it,
    /// <see cref="BatchMaxWaitMs"/> and <see cref="BatchMaxBytes"/> are set too.
    /// </summary>
    public int? BatchMaxEvents { get; set; }

    /// <summary>How long the first event of a forming batch waits for more, in milliseconds (0–10,000); null with batching off.</summary>
    public int? BatchMaxWaitMs { get; set; }

    /// <summary>Largest batch body, in bytes of UTF-8 (1,024 to the event payload cap); null with batching off.</summary>
    public int? BatchMaxBytes { get; set; }

    /// <summary>Deliveries that reached a final state (success or failed).</summary>
    public long TotalDeliveries { get; set; }

    /// <summary>Deliveries that ended in success.</summary>
    public long SuccessfulDeliveries { get; set; }

    /// <summary>Deliveries that ended in failed (every attempt used, or 410 Gone).</summary>
    public long FailedDeliveries { get; set; }

    /// <summary>When a delivery last reached a final state (UTC).</summary>
    public DateTimeOffset? LastDeliveryAt { get; set; }

    /// <summary>When a delivery last succeeded (UTC).</summary>
    public DateTimeOffset? LastSuccessAt { get; set; }

    /// <summary>When a delivery last failed for good (UTC).</summary>
    public DateTimeOffset? LastFailureAt { get; set; }

    /// <summary>Creation time (UTC).</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>Last change by its owner or by the dispatcher (UTC).</summary>
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>
    /// Why it is inactive: <see cref="DisabledReasons.EndpointGone"/>, <see cref="DisabledReasons.Failing"/>
    /// or <see cref="DisabledReasons.Owner"/>; null while active.
    /// </summary>
    public string? DisabledReason { get; set; }

    /// <summary>When it was last disabled (UTC); null while active.</summary>
    public DateTimeOffset? DisabledAt { get; set; }

    /// <summary>When its deliveries started failing with no success since (UTC); null after a success.</summary>
    public DateTimeOffset? FailingSince { get; set; }

    /// <summary>Deliveries that ended failed since the last one that succeeded.</summary>
    public int FailuresSinceSuccess { get; set; }

    /// <summary>Whether a <c>WebhookSubscriptionDisabled</c> message is still to be published for the last automatic disable.</summary>
    public bool DisabledNoticePending { get; set; }

    /// <summary>When its owner deleted it (UTC). Deleted subscriptions are inactive, invisible to the API, and keep their delivery history.</summary>
    public DateTimeOffset? DeletedAt { get; set; }
}

/// <summary>The values of <see cref="WebhookSubscription.DisabledReason"/>.</summary>
public static class DisabledReasons
{
    /// <summary>The endpoint answered 410 Gone.</summary>
    public const string EndpointGone = "endpoint_gone";

    /// <summary>Every delivery failed for <c>AutoDisable:AfterDays</c>, at least <c>AutoDisable:MinFailures</c> times.</summary>
    public const string Failing = "failing";

    /// <summary>Its owner turned it off (<c>PATCH is_active: false</c>).</summary>
    public const string Owner = "owner";

    /// <summary>All reasons.</summary>
    public static readonly IReadOnlyList<string> All = [EndpointGone, Failing, Owner];
}
