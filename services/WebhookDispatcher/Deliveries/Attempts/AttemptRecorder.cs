using System.Threading.Channels;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Stores finished attempts in batches (one <see cref="AttemptStore.RecordAsync"/> statement
/// each, lingering <see cref="Linger"/> when few wait) and hands each failed attempt with attempts
/// left to the <see cref="RetryPublisher"/>, and ordered deliveries that finished to the
/// <see cref="OrderingSuccessors"/>. While the database is away a batch is kept in memory
/// and tried again: a result kept beats one thrown away.
/// </summary>
public sealed partial class AttemptRecorder(
    AttemptStore store, RetryPublisher retries, DatabaseClock clock, TimeProvider time, ILogger<AttemptRecorder> logger,
    OrderingSuccessors? successors = null)
{
    private const int MaxBatch = 500;

    /// <summary>How long a small batch waits for more: nothing waits on a record but statistics and retry messages.</summary>
    public static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(20);

    private readonly Channel<FinishedAttempt> _finished = Channel.CreateUnbounded<FinishedAttempt>(new() { SingleReader = true });
    private readonly Lock _start = new();
    private Task? _loop;

    /// <summary>Queues a finished attempt for the next batch.</summary>
    public void Add(FinishedAttempt attempt)
    {
        lock (_start) _loop ??= Task.Run(RecordLoopAsync);
        _finished.Writer.TryWrite(attempt);
    }

    /// <summary>
    /// Records everything queued, accepts nothing more, and waits until the retries it handed
    /// over were sent (at most 10 s). For the stop, once no attempt is running.
    /// </summary>
    public async Task DrainAsync()
    {
        _finished.Writer.TryComplete();
        Task? loop;
        lock (_start) loop = _loop;
        if (loop is not null) await loop;
        await retries.FlushAsync();
    }

    private async Task RecordLoopAsync()
    {
        var batch = new List<FinishedAttempt>(MaxBatch);
        while (await _finished.Reader.WaitToReadAsync())
        {
            await ChannelBatches.GatherAsync(_finished.Reader, batch, MaxBatch, Linger);
            var moved = await RecordWithRetryAsync(batch);
            // Committed: the next delivery of each ordered key that finished may start (decision 0014).
            successors?.AfterRecord(batch, moved);
            foreach (var a in batch)
            {
                WebhookTelemetry.RecordAttempt(a.Response);
                var stillOpen = moved.Contains(a.Delivery.Id);
                LogAttempt(logger, a.Delivery.Id, a.Delivery.AttemptNumber, a.Delivery.MaxAttempts, a.Response.Outcome, a.Response.StatusCode,
                    (int)a.Response.Duration.TotalMilliseconds, stillOpen ? a.Decision.Status : "unchanged");
                if (stillOpen && a.Decision is { Status: DeliveryStatus.Retrying, NextRetryAt: { } due })
                    retries.Schedule(new DeliverWebhook(a.Delivery.Id, a.Delivery.SubscriptionId), due);
            }
        }
    }

    private async Task<IReadOnlySet<Guid>> RecordWithRetryAsync(List<FinishedAttempt> batch)
    {
        var wait = TimeSpan.FromMilliseconds(250);
        while (true)
        {
            try
            {
                return await store.RecordAsync(batch, clock.Offset, CancellationToken.None);
            }
            catch (Exception ex)
            {
                store.OnFailure(ex);
                LogRecordFailed(logger, ex, batch.Count, wait.TotalSeconds);
                await Task.Delay(wait, time, CancellationToken.None);
                // At most 2 s apart: once the database is back the answer must be stored before the
                // reconciler may give the attempt back (Reconciler:SettleSeconds).
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
            }
        }
    }

    [LoggerMessage(LogLevel.Debug, "Delivery {DeliveryId} attempt {Attempt}/{MaxAttempts}: {Outcome} {StatusCode} in {DurationMs} ms -> {Status}")]
    private static partial void LogAttempt(ILogger logger, Guid deliveryId, int attempt, int maxAttempts, string outcome, int? statusCode,
        int durationMs, string status);

    [LoggerMessage(LogLevel.Warning, "Could not record {Count} attempt(s); trying again in {Seconds} s")]
    private static partial void LogRecordFailed(ILogger logger, Exception ex, int count, double seconds);
}
