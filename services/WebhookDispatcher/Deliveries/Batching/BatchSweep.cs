using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Finds members of batched subscriptions left waiting past their time (their dispatcher stopped
/// or died before forming their batch, their event was redelivered, or a process's buffers were
/// full) every <see cref="BatchingOptions.SweepSeconds"/> and hands them to this process's
/// <see cref="BatchFormer"/>, which forms their batches at once (or hands them back as single
/// deliveries when their subscription no longer batches). Safe on every replica at once: a member
/// goes into one batch only (<see cref="BatchStore.CloseAsync"/>).
/// </summary>
public sealed partial class BatchSweep(BatchStore store, BatchFormer former, IOptions<BatchingOptions> options, TimeProvider time,
    ILogger<BatchSweep> logger) : BackgroundService
{
    /// <summary>Runs one pass; returns how many members it found.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var found = await store.FindLeftAsync(TimeSpan.FromSeconds(o.SweepGraceSeconds), o.SweepBatchSize, cancellationToken);
        if (found.Count > 0)
        {
            LogFound(logger, found.Count);
            former.AddOverdue(found);
        }
        return found.Count;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Value.SweepSeconds), time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                store.OnFailure(ex);
                LogSweepFailed(logger, ex, options.Value.SweepSeconds);
            }
        }
    }

    [LoggerMessage(LogLevel.Warning, "Batch sweep found {Count} event(s) left waiting for a batch; forming their batches now")]
    private static partial void LogFound(ILogger logger, int count);

    [LoggerMessage(LogLevel.Error, "Batch sweep failed; trying again in {Seconds} s")]
    private static partial void LogSweepFailed(ILogger logger, Exception ex, int seconds);
}
