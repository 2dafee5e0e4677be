using System.Collections.Concurrent;
using RabbitMQ.Client;

namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// What the dispatcher asks of RabbitMQ outside MassTransit, over one connection of its own:
/// the broker-side delays (declared on first use, for one receive endpoint and one delay level:
/// a fanout exchange and a quorum queue <c>{queue}-delay-{seconds}s</c> with
/// <c>x-message-ttl</c> that dead-letters, at least once, back to the endpoint's input exchange;
/// works on a stock RabbitMQ 3.10+ without the delayed-message-exchange plugin), and how many
/// consumers a queue has (how many replicas serve an endpoint).
/// </summary>
/// <remarks>
/// The delay queues are declared here rather than through MassTransit because a <c>queue:</c>
/// address makes MassTransit redeclare them without arguments, which the broker rejects. See
/// docs/decisions/0001-broker-held-retry-delays.md.
/// </remarks>
public sealed class RabbitMqTopology(BrokerAddress broker) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task> _declared = new();
    private readonly ConcurrentDictionary<string, byte> _delayedEndpoints = new();
    private readonly SemaphoreSlim _connect = new(1, 1);
    private IConnection? _connection;

    /// <summary>The exchange (and queue) name that holds messages for <paramref name="delay"/> before
    /// they return to <paramref name="inputQueue"/>.</summary>
    public static string DelayExchangeName(string inputQueue, TimeSpan delay) =>
        $"{inputQueue}-delay-{(long)delay.TotalSeconds}s";

    /// <summary>Declares the delay exchange and queue if this process has not yet, and returns the exchange name.</summary>
    /// <param name="inputQueue">The receive endpoint's queue; MassTransit names its input exchange the same.</param>
    /// <param name="delay">One of <see cref="DelayLevels.All"/>.</param>
    /// <param name="cancellationToken">Cancels the declaration.</param>
    /// <exception cref="RabbitMQ.Client.Exceptions.OperationInterruptedException">The broker refused a declaration.</exception>
    /// <exception cref="RabbitMQ.Client.Exceptions.BrokerUnreachableException">No connection to the broker.</exception>
    public async Task<string> EnsureDelayAsync(string inputQueue, TimeSpan delay, CancellationToken cancellationToken)
    {
        var name = DelayExchangeName(inputQueue, delay);
        var task = _declared.GetOrAdd(name, _ => DeclareDelayAsync(name, inputQueue, delay, cancellationToken));
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

    /// <summary>Forgets what was declared, so the next use declares again (after an operator deleted a queue).</summary>
    public void ForgetDeclarations() => _declared.Clear();

    /// <summary>Notes that the receive endpoint <paramref name="inputQueue"/> uses broker-held delays, so
    /// <see cref="DeclareAllDelaysAsync"/> declares its levels.</summary>
    public void AddDelayedEndpoint(string inputQueue) => _delayedEndpoints.TryAdd(inputQueue, 0);

    /// <summary>
    /// Declares every level of <see cref="DelayLevels.All"/> for every endpoint noted with
    /// <see cref="AddDelayedEndpoint"/> (the <c>topology</c> command), and returns their names.
    /// </summary>
    /// <exception cref="RabbitMQ.Client.Exceptions.OperationInterruptedException">The broker refused a declaration.</exception>
    /// <exception cref="RabbitMQ.Client.Exceptions.BrokerUnreachableException">No connection to the broker.</exception>
    public async Task<IReadOnlyList<string>> DeclareAllDelaysAsync(CancellationToken cancellationToken)
    {
        var names = new List<string>();
        foreach (var inputQueue in _delayedEndpoints.Keys.Order(StringComparer.Ordinal))
            foreach (var level in DelayLevels.All)
                names.Add(await EnsureDelayAsync(inputQueue, level, cancellationToken).ConfigureAwait(false));
        return names;
    }

    /// <summary>The number of consumers of <paramref name="queue"/>, or null when the queue does not exist.</summary>
    /// <exception cref="RabbitMQ.Client.Exceptions.BrokerUnreachableException">No connection to the broker.</exception>
    public async Task<uint?> ConsumerCountAsync(string queue, CancellationToken cancellationToken)
    {
        var connection = await ConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            var ok = await channel.QueueDeclarePassiveAsync(queue, cancellationToken).ConfigureAwait(false);
            return ok.ConsumerCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 404)
        {
            return null;
        }
    }

    private async Task DeclareDelayAsync(string name, string inputQueue, TimeSpan delay, CancellationToken cancellationToken)
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
            // The first node that answers, of those listed.
            var factory = broker.CreateFactory("webhook-dispatcher-topology");
            return _connection = await factory.CreateConnectionAsync(broker.Endpoints, cancellationToken).ConfigureAwait(false);
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
