namespace WebhookDispatcher.Deliveries;

/// <summary>
/// One event for one subscription (table <c>webhook_deliveries</c>, unique on
/// (subscription_id, event_id)). Its payload is built once, so every attempt sends the same bytes:
/// in <see cref="Payload"/>, or, for a large one, once per event in <c>webhook_event_payloads</c>
/// (column <c>payload_id</c>, read by raw SQL only; see <see cref="EventPayloads"/>).
/// </summary>
public sealed class WebhookDelivery
{
    /// <summary>Largest stored response body excerpt, in characters.</summary>
    public const int MaxStoredResponseChars = 4096;

    /// <summary>Primary key; also sent as <c>X-Webhook-Delivery</c>.</summary>
    public Guid Id { get; set; }

    /// <summary>The subscription this delivery is for.</summary>
    public Guid SubscriptionId { get; set; }

    /// <summary>Event type name, e.g. <c>email.received</c>.</summary>
    public required string EventType { get; set; }

    /// <summary>The event's id; also the payload's <c>id</c> and the <c>webhook-id</c> header.</summary>
    public Guid EventId { get; set; }

    /// <summary>
    /// The exact JSON body (UTF-8) POSTed on every attempt; null when the payload is stored once
    /// per event (<see cref="EventPayloads.StoredOncePerEvent"/>).
    /// </summary>
    public string? Payload { get; set; }

    /// <summary>One of <see cref="DeliveryStatus"/>.</summary>
    public required string Status { get; set; }

    /// <summary>
    /// The key its subscription orders it by (decision 0014, <see cref="OrderingKeys"/>): the event's key under
    /// <c>per_key</c>, the empty string under <c>strict</c>, null when its subscription's ordering was <c>none</c> when it was stored.
    /// </summary>
    public string? OrderingKey { get; set; }

    /// <summary>Attempts started so far.</summary>
    public int AttemptCount { get; set; }

    /// <summary>1 + the subscription's retry count when the delivery was created; a manual retry raises it by a new round's worth.</summary>
    public int MaxAttempts { get; set; }

    /// <summary>
    /// Number (1-based) of the first attempt of the current round: 1, or the attempt a manual retry
    /// started. The retry schedule counts from it, so a new round waits 2, 4, 8 s … again.
    /// </summary>
    public int RoundFirstAttempt { get; set; } = 1;

    /// <summary>HTTP status of the last attempt, if one was received.</summary>
    public int? ResponseStatusCode { get; set; }

    /// <summary>First <see cref="MaxStoredResponseChars"/> characters of the last response body.</summary>
    public string? ResponseBody { get; set; }

    /// <summary>Why the last attempt failed, if it did.</summary>
    public string? ErrorMessage { get; set; }

    /// <summary>Creation time (UTC).</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>Start of the first attempt (UTC).</summary>
    public DateTimeOffset? FirstAttemptAt { get; set; }

    /// <summary>Start of the last attempt (UTC).</summary>
    public DateTimeOffset? LastAttemptAt { get; set; }

    /// <summary>When the delivery reached a final status (UTC).</summary>
    public DateTimeOffset? CompletedAt { get; set; }

    /// <summary>
    /// When the next attempt is due (UTC); while an attempt is in flight, the end of its lease.
    /// Null once final. The reconciler re-publishes deliveries whose time is well past.
    /// </summary>
    public DateTimeOffset? NextRetryAt { get; set; }

    /// <summary>
    /// Whether an attempt is claimed and not recorded yet: in flight, or its answer waits in a
    /// process's memory for the database. No new attempt is claimed meanwhile; the reconciler
    /// gives such a claim back once its lease is long past.
    /// </summary>
    public bool InFlight { get; set; }

    /// <summary>Attempts of this delivery that were claimed and never recorded (the process died mid-attempt) in a row.</summary>
    public int LostAttempts { get; set; }

    /// <summary>
    /// Until when a replica holds this unfinished delivery in its lanes, waiting for capacity
    /// (UTC); the reconciler leaves it alone meanwhile. Null when no replica holds it.
    /// </summary>
    public DateTimeOffset? HeldUntil { get; set; }

    /// <summary>
    /// For an event of a batched subscription (a member): the batch delivery that carries it, set
    /// when the batch is formed; null while it waits for one, and for every other delivery.
    /// </summary>
    public Guid? BatchId { get; set; }

    /// <summary>For a batch delivery: how many events it carries (its members); null for every other delivery.</summary>
    public int? BatchSize { get; set; }

    /// <summary>The attempts, oldest first.</summary>
    public List<WebhookDeliveryAttempt> Attempts { get; set; } = [];
}
