using Npgsql;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// How many replicas share each subscription's limits: the consumers of
/// <see cref="DeliveryQueues.Delivery"/>, read from the broker every <see cref="RefreshInterval"/>,
/// at most the dispatchers whose heartbeat lives (<c>webhook_dispatchers</c>): a quorum queue keeps
/// counting the consumers of a node that died until the node is back (seen on the local cluster:
/// 4 for 2 replicas, for as long as the node was away), which would halve every replica's share.
/// </summary>
public sealed partial class ReplicaCounter(RabbitMqTopology topology, NpgsqlDataSource db, ILogger<ReplicaCounter> logger)
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
            var consumers = (int)(await topology.ConsumerCountAsync(DeliveryQueues.Delivery, CancellationToken.None) ?? 1);
            await using var alive = db.CreateCommand("SELECT count(*)::int FROM webhook_dispatchers WHERE alive_until >= now()");
            if (await alive.ExecuteScalarAsync() is int dispatchers && dispatchers > 0) consumers = Math.Min(consumers, dispatchers);
            Volatile.Write(ref _replicas, Math.Max(1, consumers));
        }
        catch (Exception ex)
        {
            LogReplicaCountFailed(logger, ex);
        }
    }

    [LoggerMessage(LogLevel.Debug, "Could not count the replicas on the broker or in the database; keeping the last count")]
    private static partial void LogReplicaCountFailed(ILogger logger, Exception ex);
}
