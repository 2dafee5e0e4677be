using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace WebhookDispatcher.Observability;

/// <summary>
/// Healthy when RabbitMQ answers: opens a channel on a connection of its own (one per process,
/// reopened after the broker closed it), which is a round trip to the broker on every probe.
/// MassTransit's bus check cannot say this alone: it follows the receive endpoints, so it reports
/// a broker outage only as <c>Degraded</c> (HTTP 200) on a worker and not at all on an API-only
/// instance, which has no endpoints but still publishes; and it notices a silent network loss
/// only after the AMQP heartbeat. Bounded by <see cref="HealthOptions.TimeoutSeconds"/>.
/// </summary>
public sealed class BrokerHealthCheck : IHealthCheck, IAsyncDisposable
{
    private readonly ConnectionFactory _factory;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private IConnection? _connection;

    /// <summary>Creates the check for the broker of <c>ConnectionStrings:RabbitMq</c>.</summary>
    /// <exception cref="InvalidOperationException">The connection string is missing.</exception>
    public BrokerHealthCheck(IConfiguration configuration, IOptions<HealthOptions> options)
    {
        var uri = configuration.GetConnectionString("RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is not set.");
        var timeout = TimeSpan.FromSeconds(options.Value.TimeoutSeconds);
        _factory = new ConnectionFactory
        {
            Uri = new Uri(uri),
            ClientProvidedName = "webhook-dispatcher-health",
            // A closed connection is replaced on the next probe; recovery in the background would
            // only delay noticing that the broker is back.
            AutomaticRecoveryEnabled = false,
            TopologyRecoveryEnabled = false,
            RequestedConnectionTimeout = timeout,
            ContinuationTimeout = timeout,
            HandshakeContinuationTimeout = timeout,
        };
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var connection = await ConnectionAsync(cancellationToken);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
        return HealthCheckResult.Healthy();
    }

    private async Task<IConnection> ConnectionAsync(CancellationToken cancellationToken)
    {
        if (_connection is { IsOpen: true } open) return open;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_connection is { IsOpen: true } opened) return opened;
            if (_connection is not null) await _connection.DisposeAsync();
            _connection = null;
            return _connection = await _factory.CreateConnectionAsync(cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_connection is not null) await _connection.DisposeAsync();
        _gate.Dispose();
    }
}
