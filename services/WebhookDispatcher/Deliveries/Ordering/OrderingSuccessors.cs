using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Once ordered deliveries reached a final state and their record committed, looks up the next
/// delivery of each of their keys (<see cref="OrderingStore.NextOfKeysAsync"/>, its own statement
/// after the commit, so a successor refused by the claim while the record was under way is not
/// missed) and offers it to the lanes (<see cref="OrderingHandOff"/>): a key's deliveries follow
/// one another without waiting for the reconciler. Runs beside the recorder's loop; a failed look-up
/// is left to the reconciler (the head is due and not held, so it is re-published after its grace).
/// </summary>
public sealed partial class OrderingSuccessors(OrderingStore store, OrderingHandOff handOff, IOptions<DeliveryOptions> options,
    ILogger<OrderingSuccessors> logger)
{
    /// <summary>Hands on the keys of the final, ordered attempts of <paramref name="recorded"/> whose state moved (<paramref name="moved"/>).</summary>
    public void AfterRecord(IReadOnlyList<FinishedAttempt> recorded, IReadOnlySet<Guid> moved)
    {
        List<Guid>? finished = null;
        foreach (var a in recorded)
            if (a.Delivery.Ordered && a.Decision.IsFinal && moved.Contains(a.Delivery.Id))
                (finished ??= []).Add(a.Delivery.Id);
        if (finished is not null) _ = HandOnAsync(finished);
    }

    private async Task HandOnAsync(IReadOnlyList<Guid> finished)
    {
        try
        {
            var heads = await store.NextOfKeysAsync(finished, TimeSpan.FromMilliseconds(options.Value.OrderingSettleMilliseconds), CancellationToken.None);
            handOff.Offer(heads);
        }
        catch (Exception ex)
        {
            store.OnFailure(ex);
            LogHandOnFailed(logger, ex, finished.Count);
        }
    }

    [LoggerMessage(LogLevel.Warning, "Could not look up the next deliveries of {Count} ordered key(s); the reconciler will re-publish them")]
    private static partial void LogHandOnFailed(ILogger logger, Exception ex, int count);
}
