using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using WebhookDispatcher.Messaging;

namespace WebhookDispatcher.Observability;

/// <summary>
/// Whether RabbitMQ answers, node by node: opens a channel on each listed node
/// (<see cref="BrokerAddress.Nodes"/>) over a connection of its own per node (reopened after the
/// node closed it), a round trip to every node on every probe. <c>Healthy</c> when every node
/// answers; <c>Degraded</c> when some do (a cluster that lost a node still serves: the queues are
/// replicated and the bus moves to a surviving node); <c>Unhealthy</c> when none does.
/// MassTransit's bus check cannot say this alone: it follows the receive endpoints, so it reports
/// a broker outage only as <c>Degraded</c> on a worker and not at all on an API-only instance,
/// which has no endpoints but still publishes; and it notices a silent network loss only after the
/// AMQP heartbeat. Every node is tried within <see cref="HealthOptions.TimeoutSeconds"/>.
/// </summary>
public sealed class BrokerHealthCheck : IHealthCheck, IAsyncDisposable
{
    private readonly BrokerAddress _broker;
    private readonly TimeSpan _timeout;
    private readonly Node[] _nodes;

    /// <summary>Creates the check for the broker of <c>ConnectionStrings:RabbitMq</c>.</summary>
    /// <exception cref="InvalidOperationException">The connection string is missing or malformed.</exception>
    public BrokerHealthCheck(IConfiguration configuration, IOptions<HealthOptions> options)
    {
        _broker = BrokerAddress.FromConfiguration(configuration);
        // A little inside the check's own deadline, so one silent node cannot cancel the whole check.
        _timeout = TimeSpan.FromSeconds(options.Value.TimeoutSeconds) * 0.8;
        _nodes = [.. _broker.Nodes.Select(n => new Node(BrokerAddress.Format(n), new AmqpTcpEndpoint(n.Host, n.Port)))];
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failures = await Task.WhenAll(_nodes.Select(n => ProbeAsync(n, cancellationToken)));
        var down = _nodes.Zip(failures).Where(p => p.Second is not null).ToList();
        if (down.Count == 0) return HealthCheckResult.Healthy();
        var reasons = string.Join("; ", down.Select(p => $"{p.First.Name}: {p.Second!.Message}"));
        return down.Count < _nodes.Length
            ? HealthCheckResult.Degraded($"{down.Count} of {_nodes.Length} RabbitMQ nodes do not answer ({reasons}); the others serve")
            : HealthCheckResult.Unhealthy($"No RabbitMQ node answers ({reasons})", down[0].Second);
    }

    /// <summary>Opens a channel on <paramref name="node"/>; returns null, or why it failed.</summary>
    private async Task<Exception?> ProbeAsync(Node node, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(_timeout);
        try
        {
            var connection = await node.ConnectionAsync(CreateFactory, deadline.Token);
            await using var channel = await connection.CreateChannelAsync(cancellationToken: deadline.Token);
            return null;
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return ex;
        }
    }

    private ConnectionFactory CreateFactory()
    {
        var factory = _broker.CreateFactory("webhook-dispatcher-health");
        // A closed connection is replaced on the next probe; recovery in the background would
        // only delay noticing that the node is back.
        factory.AutomaticRecoveryEnabled = false;
        factory.TopologyRecoveryEnabled = false;
        factory.RequestedConnectionTimeout = _timeout;
        factory.ContinuationTimeout = _timeout;
        factory.HandshakeContinuationTimeout = _timeout;
        return factory;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
    }

    /// <summary>One node and the check's connection to it.</summary>
    private sealed class Node(string name, AmqpTcpEndpoint endpoint) : IAsyncDisposable
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private IConnection? _connection;

        public string Name => name;

        public async Task<IConnection> ConnectionAsync(Func<ConnectionFactory> factory, CancellationToken cancellationToken)
        {
            if (_connection is { IsOpen: true } open) return open;
            await _gate.WaitAsync(cancellationToken);
            try
            {
                if (_connection is { IsOpen: true } opened) return opened;
                if (_connection is not null) await _connection.DisposeAsync();
                _connection = null;
                return _connection = await factory().CreateConnectionAsync([endpoint], cancellationToken);
            }
            finally
            {
                _gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is not null) await _connection.DisposeAsync();
            _gate.Dispose();
        }
    }
}
