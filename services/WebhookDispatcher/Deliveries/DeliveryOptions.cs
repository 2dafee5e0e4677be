using System.ComponentModel.DataAnnotations;

namespace WebhookDispatcher.Deliveries;

// The delivery wing's settings, one class per configuration section, all in this file.

/// <summary>Settings of the outbound webhook requests and the delivery engine (section <c>Delivery</c>).</summary>
public sealed class DeliveryOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Delivery";

    /// <summary>Bytes of a response body read at most; the rest is not read.</summary>
    public const int MaxResponseBytesRead = 64 * 1024;

    /// <summary>
    /// Allow URLs that resolve to loopback, private or link-local addresses. Off in production
    /// (SSRF protection); on for local development and tests whose receivers run on 127.0.0.1.
    /// </summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>
    /// Whether the fan-out claims new deliveries as it inserts them, for subscriptions whose lane
    /// could start them at once (<see cref="InsertClaims"/>, docs/decisions/0011). Default true;
    /// false makes every delivery wait for the scheduler's claim statement (one more statement
    /// and one more row write per delivery), for comparing the two.
    /// </summary>
    public bool ClaimAtInsert { get; set; } = true;

    /// <summary>
    /// Milliseconds an ordered delivery (a subscription with <c>ordering</c> <c>per_key</c> or
    /// <c>strict</c>, decision 0014) must have been stored before its first attempt may start
    /// (0–60000). Default 1000. Deliveries of one key start in the order their events occurred
    /// (<c>occurred_at</c>, then storage order), but events are stored concurrently: several fan-out
    /// consumers and replicas store them side by side, and the events a killed dispatcher held
    /// unacknowledged come back from the broker after later ones were stored. The settle time is
    /// how late an earlier event may be stored and still go first; one stored later than that
    /// after a later event of its key was stored may go after it. Longer: more such reorderings
    /// covered, and every ordered delivery's first attempt that much later.
    /// </summary>
    [Range(0, 60_000)]
    public int OrderingSettleMilliseconds { get; set; } = 1000;

    /// <summary>Attempts in flight at once in one process, all subscriptions together (1–100000). Default 2000.</summary>
    [Range(1, 100_000)]
    public int MaxInFlight { get; set; } = 2000;

    /// <summary>
    /// Attempts in flight at once to one subscription, across all replicas (1–1000). Default 32.
    /// Each replica takes its share: this divided by the number of replicas consuming
    /// <c>webhook-delivery</c>, rounded up.
    /// </summary>
    [Range(1, 1000)]
    public int MaxInFlightPerSubscription { get; set; } = 32;

    /// <summary>
    /// Attempts in flight at once from one user's subscriptions to one destination host (host
    /// and port of their URLs), across all replicas (1–10000). Default 64. Many subscriptions of
    /// one tenant to one host share this, so they cannot add up to a flood; other tenants' and
    /// other hosts' deliveries are not held by it. Each replica takes its share, as for
    /// <see cref="MaxInFlightPerSubscription"/>.
    /// </summary>
    [Range(1, 10_000)]
    public int MaxInFlightPerHost { get; set; } = 64;

    /// <summary>
    /// Attempts in flight at once from one user's subscriptions, all hosts together, across all
    /// replicas (1–100000). Default 500, a quarter of <see cref="MaxInFlight"/>: a tenant with
    /// many slow endpoints on many hosts cannot take a process's whole budget from the others.
    /// Each replica takes its share, as for <see cref="MaxInFlightPerSubscription"/>.
    /// </summary>
    [Range(1, 100_000)]
    public int MaxInFlightPerUser { get; set; } = 500;

    /// <summary>
    /// Bytes of large bodies (<see cref="EventPayloads.Large"/> bytes or more) one user's
    /// attempts may send per second from one process (each replica paces its own), 0 for no limit
    /// (0–1073741824; counted in whole KiB, at least 1 KiB/s).
    /// Default 16,777,216 (16 MiB/s: 64 bodies at the default payload cap). A tenant's burst of
    /// maximum-size events is spread over seconds instead of taking the machine's cores for an
    /// instant from every other tenant; smaller bodies are never held. An attempt waits for its
    /// bytes only while its user has less than 10 s of such waits queued; past that it goes at once.
    /// </summary>
    [Range(0, 1 << 30)]
    public int LargeBodyBytesPerSecondPerUser { get; set; } = 16 << 20;

    /// <summary>
    /// Deliveries of one subscription waiting in one process for capacity (1–1000000). Default
    /// 10000. Beyond it, deliveries wait in the database and come back through the reconciler.
    /// </summary>
    [Range(1, 1_000_000)]
    public int MaxQueuedPerSubscription { get; set; } = 10_000;

    /// <summary>
    /// Consecutive timeouts of one subscription's attempts that open its circuit (1–1000). Default 5.
    /// While open, its deliveries wait without spending attempts.
    /// </summary>
    [Range(1, 1000)]
    public int CircuitBreakerTimeouts { get; set; } = 5;

    /// <summary>Seconds an open circuit waits before one probe attempt (1–3600). Default 30.</summary>
    [Range(1, 3600)]
    public int CircuitBreakSeconds { get; set; } = 30;

    /// <summary>
    /// Messages the broker sends ahead to one process, per endpoint, and how many of them are
    /// consumed at once (1–10000). Default 100. It bounds a fan-out batch (events wait for their
    /// batch's commit before they are acknowledged), so below about 50 the insert statements get
    /// small. Above a few hundred it costs CPU: the RabbitMQ client runs one dispatch loop per
    /// message consumed at once and wakes every idle loop for each message that arrives. On 2
    /// cores, 100 instead of 1000 took the dispatcher from about 420 to 350 CPU-µs per delivery at
    /// 500 events/s, and 1 → 1 from 3,530 to 4,268 deliveries/s (docs/benchmarks/pipeline.md).
    /// </summary>
    [Range(1, 10_000)]
    public int PrefetchCount { get; set; } = 100;

    /// <summary>
    /// The event payload cap, in bytes (1024–4194304, default 262144 = 256 KiB, the order
    /// Standard Webhooks and Svix advise): the most UTF-8 bytes of JSON a subscriber receives for
    /// one event (the body <c>WebhookPayload.Build</c> makes).
    /// A larger event is parked in <c>webhook-fan-out_error</c> at once with a reason naming its
    /// size and this cap, and nothing is delivered for it. The message as received is checked
    /// first, before it is read, against <see cref="MaxReceivedEventBytes"/>. See
    /// <see cref="EventSizeLimit"/>.
    /// </summary>
    [Range(EventSizeLimit.MinMaxEventBytes, EventSizeLimit.MaxMaxEventBytes)]
    public int MaxEventBytes { get; set; } = EventSizeLimit.DefaultMaxEventBytes;

    /// <summary>
    /// The most bytes an event's message may have as received from RabbitMQ (envelope included)
    /// before it is even read: <see cref="EventSizeLimit.ReceivedBytesFactor"/> ×
    /// <see cref="MaxEventBytes"/> + <see cref="EventSizeLimit.EnvelopeAllowanceBytes"/>
    /// (1,114,112 bytes by default).
    /// </summary>
    public long MaxReceivedEventBytes => EventSizeLimit.MaxReceivedBytes(MaxEventBytes);

    /// <summary>Events fanned out in one database statement at most (1–5000). Default 500.</summary>
    [Range(1, 5000)]
    public int FanOutBatchSize { get; set; } = 500;

    /// <summary>
    /// Redeliveries of a message whose consumer failed for a reason of our own (database or broker
    /// trouble), 2, 4 … s apart, then hourly (0–100). Default 20, about 10 hours; then the message is
    /// parked in the endpoint's <c>_error</c> queue.
    /// </summary>
    [Range(0, 100)]
    public int TransientRedeliveries { get; set; } = 20;

    /// <summary>
    /// Times an attempt may be lost to the process dying before a delivery is failed with outcome
    /// <c>lost</c> (1–100). Default 3: an attempt that kills the dispatcher every time does not
    /// loop forever.
    /// </summary>
    [Range(1, 100)]
    public int MaxLostAttempts { get; set; } = 3;

    /// <summary>The User-Agent header of webhook requests.</summary>
    [Required]
    public string UserAgent { get; set; } = "Notely-Webhooks/1.0";
}

/// <summary>
/// When the dispatcher turns a failing subscription off by itself, as Svix and Stripe do
/// (section <c>AutoDisable</c>): every delivery failed for <see cref="AfterDays"/>, at least
/// <see cref="MinFailures"/> of them. A 410 Gone answer turns it off at once, whatever these say.
/// </summary>
public sealed class AutoDisableOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "AutoDisable";

    /// <summary>Days of failures with no success in between (0–365). Default 5.</summary>
    [Range(0, 365)]
    public double AfterDays { get; set; } = 5;

    /// <summary>Failed deliveries since the last success, at least (1–1000000). Default 10.</summary>
    [Range(1, 1_000_000)]
    public int MinFailures { get; set; } = 10;
}

/// <summary>Settings of the <see cref="DeliveryReconciler"/> (section <c>Reconciler</c>).</summary>
public sealed class ReconcilerOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Reconciler";

    /// <summary>
    /// Seconds between two passes (1–3600). Default 2: with <see cref="GraceSeconds"/> it bounds
    /// how late a delivery whose message or dispatcher was lost comes (grace + interval).
    /// </summary>
    [Range(1, 3600)]
    public int IntervalSeconds { get; set; } = 2;

    /// <summary>
    /// Seconds a delivery may be overdue before it is re-published (3–86400). Default 5.
    /// Deliveries waiting in a replica's lanes for capacity are held meanwhile (held by the
    /// dispatcher after half the grace; its heartbeat lives for the grace and is renewed every
    /// third of it), and an attempt in flight is leased for its timeout plus 30 s, or until its
    /// dispatcher's heartbeat ran out and the claim is older than the grace, so this only has to
    /// cover a message's trip through the broker. A duplicate is harmless: the claim lets only one
    /// of them attempt. It also bounds how late a delivery comes after its dispatcher was killed
    /// (grace + <see cref="IntervalSeconds"/>, plus the trip through the broker).
    /// </summary>
    [Range(3, 86400)]
    public int GraceSeconds { get; set; } = 5;

    /// <summary>
    /// Seconds the reconcilers must have run without a gap (after a database outage, or with no
    /// dispatcher running) before an attempt claimed and never recorded is given back and made
    /// again (0–600). Default 30: a live process that kept the answer in memory through the outage
    /// records it within seconds of the database's return, and wins.
    /// </summary>
    [Range(0, 600)]
    public int SettleSeconds { get; set; } = 30;

    /// <summary>Deliveries re-published per pass at most (1–10000).</summary>
    [Range(1, 10000)]
    public int BatchSize { get; set; } = 500;
}
