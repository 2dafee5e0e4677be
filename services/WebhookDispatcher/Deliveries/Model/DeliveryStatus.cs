namespace WebhookDispatcher.Deliveries;

/// <summary>The values of <c>webhook_deliveries.status</c>.</summary>
public static class DeliveryStatus
{
    /// <summary>Created by the fan-out; no attempt finished yet.</summary>
    public const string Pending = "pending";

    /// <summary>At least one attempt failed and another one is scheduled at <c>next_retry_at</c>.</summary>
    public const string Retrying = "retrying";

    /// <summary>An attempt got a 2xx answer. Final.</summary>
    public const string Success = "success";

    /// <summary>Every attempt failed, or the receiver answered 410 Gone. Final.</summary>
    public const string Failed = "failed";

    /// <summary>Stopped before success, e.g. because the subscription was deleted or disabled. Final.</summary>
    public const string Cancelled = "cancelled";

    /// <summary>
    /// An event of a batched subscription: it waits to go into a batch (<c>batch_id</c> null) or is
    /// in a batch not finished yet; it then takes the batch's final status (docs/decisions/0015).
    /// </summary>
    public const string Batched = "batched";

    /// <summary>All statuses, for validation and the database check constraint.</summary>
    public static readonly IReadOnlyList<string> All = [Pending, Retrying, Success, Failed, Cancelled, Batched];
}
