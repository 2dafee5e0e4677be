using System.ComponentModel.DataAnnotations;

namespace WebhookDispatcher.Subscriptions;

/// <summary>Settings of the management API (section <c>Subscriptions</c>).</summary>
public sealed class SubscriptionOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Subscriptions";

    /// <summary>Accept only https subscriber URLs.</summary>
    public bool RequireHttps { get; set; }

    /// <summary>Hours the previous secret keeps signing after a rotation (0–720).</summary>
    [Range(0, 720)]
    public int SecretRotationGraceHours { get; set; } = 24;

    /// <summary>
    /// Test sends (<c>POST /api/webhooks/{id}/test</c>) a user may make per minute, over all their
    /// subscriptions (1–600): a burst of this many, then one every 60/N seconds. Counted per
    /// process, so N replicas of the API allow up to N times this.
    /// </summary>
    [Range(1, 600)]
    public int TestRequestsPerMinute { get; set; } = 10;

    /// <summary>
    /// Subscriptions a user may have (1–100000; deleted ones do not count). One more is refused
    /// with 409. Held in the database, so it holds for all replicas of the API together.
    /// </summary>
    [Range(1, 100_000)]
    public int MaxPerUser { get; set; } = 200;

    /// <summary>
    /// Subscriptions a user may create in any 60 seconds (1–100000), deleted ones included, so
    /// creating and deleting cannot get round it. One more is refused with 429 and a
    /// <c>Retry-After</c> saying when the oldest creation leaves the window. Held in the database,
    /// so it holds for all replicas of the API together.
    /// </summary>
    [Range(1, 100_000)]
    public int CreatesPerMinute { get; set; } = 30;

    /// <summary>
    /// Seconds <c>POST …/deliveries/{delivery_id}/retry</c> waits for the broker to take the
    /// delivery's message (1–60). Default 3. The restarted delivery is stored as due now before
    /// the publish, so when the broker is slow or down the answer is still 202 and the reconciler
    /// publishes it once it is <c>Reconciler:GraceSeconds</c> overdue and the broker is back.
    /// </summary>
    [Range(1, 60)]
    public int RetryPublishTimeoutSeconds { get; set; } = 3;
}
