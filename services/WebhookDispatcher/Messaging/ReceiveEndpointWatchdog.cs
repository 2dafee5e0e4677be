using System.Collections.Concurrent;
using MassTransit;
using RabbitMQ.Client;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// Reconnects the receive endpoints within about a second of the broker's return. MassTransit
/// 8.5's RabbitMQ transport retries a lost endpoint on a fixed exponential schedule of its own
/// (about 6 s, then 9, 15, 27, 30 s, each ±25 %, plus 1 s; the host's
/// <c>ReceiveTransportRetryPolicy</c>, which no configurator exposes, and whose count is never
/// reset while the process runs), so an endpoint lost in a broker restart came back up to its
/// current wait after the broker did. This watch follows every endpoint
/// (<see cref="IReceiveEndpointObserver"/>): one that faulted, or completed while the process
/// runs, is down until it reports ready again. While any is down it asks the broker every
/// <see cref="ProbeInterval"/> (a connection of its own to the listed nodes, opened and closed);
/// once the broker answers it stops and starts each down endpoint (<see cref="IReceiveEndpoint.Stop"/>,
/// <see cref="IReceiveEndpoint.Start"/>: MassTransit's supported restart), which connects at once
/// with a fresh retry schedule. An endpoint that goes down again before it is ready is restarted
/// after <see cref="FirstBackoff"/>, doubling to <see cref="MostBackoff"/> (a fault that is not the
/// broker's absence, such as a refused declaration, must not loop); being ready resets that.
/// Decision: docs/decisions/0010-clusters-and-fast-recovery.md.
/// </summary>
public sealed partial class ReceiveEndpointWatchdog(
    BrokerAddress broker, IHostApplicationLifetime lifetime, TimeProvider time, ILogger<ReceiveEndpointWatchdog> logger)
    : BackgroundService, IReceiveEndpointObserver
{
    /// <summary>How often the broker is asked while an endpoint is down: 0.5 s.</summary>
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>How long one probe may take (connection and handshake) before it counts as failed: 2 s.</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    /// <summary>The wait before a restarted endpoint that went down again is restarted again: 1 s.</summary>
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between two restarts of an endpoint that keeps going down: 10 s.</summary>
    public static readonly TimeSpan MostBackoff = TimeSpan.FromSeconds(10);

    /// <summary>How long the stop of a down endpoint may take before the restart goes on regardless: 10 s.</summary>
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<Uri, Watched> _endpoints = new();
    private readonly SemaphoreSlim _wake = new(0, 1);

    /// <summary>Restarts made since the process started (for tests and logs).</summary>
    public int Restarts => Volatile.Read(ref _restarts);

    private int _restarts;

    /// <summary>Endpoints down now (faulted or completed, not ready since), by input address.</summary>
    public IReadOnlyList<Uri> Down => [.. _endpoints.Where(e => e.Value.Down).Select(e => e.Key)];

    /// <inheritdoc />
    public Task Ready(ReceiveEndpointReady ready)
    {
        var watched = Watch(ready.ReceiveEndpoint, ready.InputAddress);
        lock (watched)
        {
            watched.Down = false;
            watched.Backoff = FirstBackoff;
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task Stopping(ReceiveEndpointStopping stopping) => Task.CompletedTask;

    /// <inheritdoc />
    public Task Completed(ReceiveEndpointCompleted completed)
    {
        MarkDown(completed.ReceiveEndpoint, completed.InputAddress);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task Faulted(ReceiveEndpointFaulted faulted)
    {
        MarkDown(faulted.ReceiveEndpoint, faulted.InputAddress);
        return Task.CompletedTask;
    }

    private Watched Watch(IReceiveEndpoint endpoint, Uri address) => _endpoints.GetOrAdd(address, _ => new Watched(endpoint));

    private void MarkDown(IReceiveEndpoint endpoint, Uri address)
    {
        if (lifetime.ApplicationStopping.IsCancellationRequested) return;
        var watched = Watch(endpoint, address);
        lock (watched)
        {
            // Our own stop of it completes it too: that is not news.
            if (watched.Restarting) return;
            watched.Down = true;
        }
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // A wake-up is pending already.
        }
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, lifetime.ApplicationStopping);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var now = time.GetUtcNow();
                var due = _endpoints.Where(e => e.Value.Down && now >= e.Value.NextRestart).ToList();
                if (due.Count == 0)
                {
                    await _wake.WaitAsync(ProbeInterval, stop.Token);
                    continue;
                }
                if (await BrokerAnswersAsync(stop.Token))
                    foreach (var (address, watched) in due)
                        await RestartAsync(address, watched, stop.Token);
                await Task.Delay(ProbeInterval, time, stop.Token);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopping: MassTransit stops the endpoints itself.
        }
    }

    /// <summary>Whether a node of the broker accepts a connection now (opened and closed at once, within <see cref="ProbeTimeout"/>).</summary>
    private async Task<bool> BrokerAnswersAsync(CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(ProbeTimeout);
        var factory = broker.CreateFactory("webhook-dispatcher-reconnect-probe");
        factory.AutomaticRecoveryEnabled = false;
        factory.TopologyRecoveryEnabled = false;
        factory.RequestedConnectionTimeout = ProbeTimeout;
        factory.HandshakeContinuationTimeout = ProbeTimeout;
        factory.ContinuationTimeout = ProbeTimeout;
        try
        {
            await using var connection = await factory.CreateConnectionAsync(broker.Endpoints, deadline.Token);
            await connection.CloseAsync(deadline.Token);
            return true;
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            LogBrokerAway(logger, ex.GetBaseException().Message);
            return false;
        }
    }

    private async Task RestartAsync(Uri address, Watched watched, CancellationToken cancellationToken)
    {
        lock (watched)
        {
            if (!watched.Down) return; // ready again meanwhile (MassTransit's own retry)
            watched.Restarting = true;
        }
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            deadline.CancelAfter(StopTimeout);
            try
            {
                await watched.Endpoint.Stop(deadline.Token);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                LogStopFailed(logger, ex, address);
            }
        }
        lock (watched)
        {
            // Up until it reports a fault again: one that comes from the start below counts.
            watched.Restarting = false;
            watched.Down = false;
            watched.NextRestart = time.GetUtcNow() + watched.Backoff;
            watched.Backoff = TimeSpan.FromTicks(Math.Min(watched.Backoff.Ticks * 2, MostBackoff.Ticks));
        }
        if (cancellationToken.IsCancellationRequested) return;
        try
        {
            watched.Endpoint.Start(CancellationToken.None);
            Interlocked.Increment(ref _restarts);
            LogRestarted(logger, address);
        }
        catch (Exception ex)
        {
            LogRestartFailed(logger, ex, address);
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }

    private sealed class Watched(IReceiveEndpoint endpoint)
    {
        public IReceiveEndpoint Endpoint { get; } = endpoint;
        public bool Down { get; set; }
        public bool Restarting { get; set; }
        public DateTimeOffset NextRestart { get; set; }
        public TimeSpan Backoff { get; set; } = FirstBackoff;
    }

    [LoggerMessage(LogLevel.Debug, "RabbitMQ does not answer yet ({Reason}); the receive endpoints wait")]
    private static partial void LogBrokerAway(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Information, "RabbitMQ answers again: receive endpoint {Address} restarted (not left to MassTransit's reconnect schedule)")]
    private static partial void LogRestarted(ILogger logger, Uri address);

    [LoggerMessage(LogLevel.Warning, "Receive endpoint {Address} did not stop cleanly before its restart")]
    private static partial void LogStopFailed(ILogger logger, Exception ex, Uri address);

    [LoggerMessage(LogLevel.Warning, "Could not restart receive endpoint {Address}; MassTransit's own reconnect goes on")]
    private static partial void LogRestartFailed(ILogger logger, Exception ex, Uri address);
}
