using System.Collections.Concurrent;
using RabbitMQ.Client;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// Declares, on first use, the broker-side delay for one receive endpoint and one delay level:
/// a fanout exchange and a quorum queue <c>{queue}-delay-{seconds}s</c> with
/// <c>x-message-ttl</c> that dead-letters (at-least-once) back to the endpoint's input exchange.
/// Works on a stock RabbitMQ 3.10+; no delayed-message-exchange plugin is needed.
/// </summary>
/// <remarks>
/// The queues are declared here rather than through MassTransit because a <c>queue:</c> address
/// makes MassTransit redeclare them without arguments, which the broker rejects. See
/// docs/decisions/0001-broker-held-retry-delays.md.
/// </remarks>
public sealed class RabbitMqDelayTopology(Uri brokerUri) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task> _declared = new();
    private readonly SemaphoreSlim _connect = new(1, 1);
    private IConnection? _connection;

    /// <summary>The exchange (and queue) name that holds messages for <paramref name="delay"/> before
    /// they return to <paramref name="inputQueue"/>.</summary>
    public static string DelayExchangeName(string inputQueue, TimeSpan delay) =>
        $"{inputQueue}-delay-{(long)delay.TotalSeconds}s";

    /// <summary>Declares the delay exchange and queue if this process has not yet, and returns the exchange name.</summary>
    /// <param name="inputQueue">The receive endpoint's queue; MassTransit names its input exchange the same.</param>
    /// <param name="delay">One of <see cref="RetrySchedule.DelayLevels"/>.</param>
    /// <param name="cancellationToken">Cancels the declaration.</param>
    /// <exception cref="RabbitMQ.Client.Exceptions.OperationInterruptedException">The broker refused a declaration.</exception>
    public async Task<string> EnsureAsync(string inputQueue, TimeSpan delay, CancellationToken cancellationToken)
    {
        var name = DelayExchangeName(inputQueue, delay);
        var task = _declared.GetOrAdd(name, _ => DeclareAsync(name, inputQueue, delay, cancellationToken));
        try
        {
            await task.ConfigureAwait(false);
        }
        catch
        {
            _declared.TryRemove(name, out _);
            throw;
        }
        return name;
    }

    private async Task DeclareAsync(string name, string inputQueue, TimeSpan delay, CancellationToken cancellationToken)
    {
        var connection = await ConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.ExchangeDeclareAsync(name, ExchangeType.Fanout, durable: true, autoDelete: false,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueDeclareAsync(name, durable: true, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?>
            {
                ["x-queue-type"] = "quorum",
                ["x-message-ttl"] = (long)delay.TotalMilliseconds,
                ["x-dead-letter-exchange"] = inputQueue,
                ["x-dead-letter-strategy"] = "at-least-once",
                ["x-overflow"] = "reject-publish",
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueBindAsync(name, name, routingKey: "", cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    private async Task<IConnection> ConnectionAsync(CancellationToken cancellationToken)
    {
        if (_connection is { IsOpen: true } open) return open;
        await _connect.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is { IsOpen: true } again) return again;
            if (_connection is not null) await _connection.DisposeAsync().ConfigureAwait(false);
            var factory = new ConnectionFactory { Uri = brokerUri, ClientProvidedName = "webhook-dispatcher-delay-topology" };
            return _connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _connect.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_connection is not null) await _connection.DisposeAsync().ConfigureAwait(false);
        _connect.Dispose();
    }
}
