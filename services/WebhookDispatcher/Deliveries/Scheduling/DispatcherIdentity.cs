namespace WebhookDispatcher.Deliveries;

/// <summary>
/// This process among the dispatchers: the id its holds carry (<c>webhook_deliveries.held_by</c>)
/// and its heartbeat row (<c>webhook_dispatchers</c>) is kept under. New at every start.
/// </summary>
public sealed class DispatcherIdentity
{
    /// <summary>The id (UUID version 7).</summary>
    public Guid Id { get; } = Guid.CreateVersion7();
}
