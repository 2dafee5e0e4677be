namespace WebhookDispatcher.Deliveries;

/// <summary>
/// One HTTP attempt of a delivery (table <c>webhook_delivery_attempts</c>, primary key
/// (<see cref="DeliveryId"/>, <see cref="AttemptNumber"/>), partitioned like the deliveries).
/// </summary>
public sealed class WebhookDeliveryAttempt
{
    /// <summary>The delivery attempted.</summary>
    public Guid DeliveryId { get; set; }

    /// <summary>1 for the first attempt, counting up.</summary>
    public int AttemptNumber { get; set; }

    /// <summary>When the request started (UTC).</summary>
    public DateTimeOffset AttemptedAt { get; set; }

    /// <summary>From request start to the end of the body read or the failure, in milliseconds.</summary>
    public int DurationMs { get; set; }

    /// <summary>HTTP status received, if any.</summary>
    public int? StatusCode { get; set; }

    /// <summary>Outcome class: <c>success</c>, <c>http_status</c>, <c>timeout</c>, <c>connection_refused</c>, … (see <see cref="AttemptOutcome"/>).</summary>
    public required string Outcome { get; set; }

    /// <summary>Human-readable failure reason, if the attempt failed.</summary>
    public string? ErrorMessage { get; set; }

    /// <summary>First 4096 characters of the response body, if any.</summary>
    public string? ResponseExcerpt { get; set; }
}
