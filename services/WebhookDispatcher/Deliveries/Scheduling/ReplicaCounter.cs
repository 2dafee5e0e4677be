using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// How many replicas share each subscription's limits: the consumers of
/// <see cref="DeliveryQueues.Delivery"/>, read from the broker every <see cref="RefreshInterval"/>.
/// </summary>
public sealed partial class ReplicaCounter(RabbitMqTopology topology, ILogger<ReplicaCounter> logger)
{
    /// <summary>How often the count is read from the broker.</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(15);

    private int _replicas = 1;
    private DateTimeOffset _next;

    /// <summary>The last count (1 or more).</summary>
    public int Current => Volatile.Read(ref _replicas);

    /// <summary>Starts a count in the background when the last is older than <see cref="RefreshInterval"/>.</summary>
    public void RefreshIfDue(DateTimeOffset now)
    {
        if (now < _next) return;
        _next = now + RefreshInterval;
        _ = CountAsync();
    }

    private async Task CountAsync()
    {
        try
        {
            var consumers = await topology.ConsumerCountAsync(DeliveryQueues.Delivery, CancellationToken.None);
            Volatile.Write(ref _replicas, Math.Max(1, (int)(consumers ?? 1)));
        }
        catch (Exception ex)
        {
            LogReplicaCountFailed(logger, ex);
        }
    }

    [LoggerMessage(LogLevel.Debug, "Could not count the replicas on the broker; keeping the last count")]
    private static partial void LogReplicaCountFailed(ILogger logger, Exception ex);
}
