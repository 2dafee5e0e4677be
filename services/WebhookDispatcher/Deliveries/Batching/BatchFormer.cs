using System.Threading.Channels;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The batch stage (docs/decisions/0015): members of batched subscriptions come from the
/// <see cref="FanOutBatcher"/> (new events) and the <see cref="BatchSweep"/> (members left
/// waiting), wait in <see cref="BatchBuffers"/> in one loop with a timer to the millisecond, and
/// each batch that closes is formed in one transaction (<see cref="BatchStore.CloseAsync"/>, at
/// most <see cref="BatchingOptions.MaxConcurrentCloses"/> at once) and handed to the
/// <see cref="DeliveryScheduler"/> like a new delivery: from there it is claimed, attempted,
/// retried and recorded as any delivery is, within its subscription's lane.
/// </summary>
/// <remarks>
/// Nothing is lost when the process dies: members are rows (status <c>batched</c>) before they
/// arrive here, the sweep of any replica forms the batches of members left waiting, and a batch
/// is a delivery row the reconciler covers. A close that fails leaves its members waiting for the
/// sweep.
/// </remarks>
public sealed partial class BatchFormer(BatchStore store, DeliveryScheduler scheduler, IOptions<BatchingOptions> options, TimeProvider time,
    ILogger<BatchFormer> logger) : BackgroundService
{
    private readonly Channel<(IReadOnlyList<BatchMember> Members, bool Overdue)> _incoming =
        Channel.CreateUnbounded<(IReadOnlyList<BatchMember>, bool)>(new() { SingleReader = true });
    private SemaphoreSlim? _closes;

    /// <summary>Queues new members (just committed by the fan-out); their wait starts now.</summary>
    public void Add(IReadOnlyList<BatchMember> members)
    {
        if (members.Count > 0) _incoming.Writer.TryWrite((members, false));
    }

    /// <summary>Queues new members after <paramref name="delay"/> (members of an ordered subscription, once they settled); their wait starts then.</summary>
    public void AddAfter(IReadOnlyList<BatchMember> members, TimeSpan delay)
    {
        if (members.Count > 0) _ = AddLaterAsync(members, delay);
    }

    private async Task AddLaterAsync(IReadOnlyList<BatchMember> members, TimeSpan delay)
    {
        await Task.Delay(delay, time);
        Add(members);
    }

    /// <summary>Queues members found waiting past their time (the sweep): their batch closes at once.</summary>
    public void AddOverdue(IReadOnlyList<BatchMember> members)
    {
        if (members.Count > 0) _incoming.Writer.TryWrite((members, true));
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var o = options.Value;
        var closes = _closes = new SemaphoreSlim(o.MaxConcurrentCloses);
        var buffers = new BatchBuffers(o.MaxBufferedMembers);
        var closed = new List<ClosedBatch>();
        Task<bool>? readable = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var now = time.GetUtcNow();
                while (_incoming.Reader.TryRead(out var arrived))
                    foreach (var member in arrived.Members)
                        buffers.Add(member, arrived.Overdue ? DateTimeOffset.MinValue : now, closed);
                buffers.CloseDue(now, closed);
                foreach (var batch in closed)
                {
                    await closes.WaitAsync(stoppingToken);
                    _ = CloseAsync(batch, closes);
                }
                closed.Clear();

                readable ??= _incoming.Reader.WaitToReadAsync(stoppingToken).AsTask();
                if (buffers.NextDue() is { } due)
                {
                    var wait = due - time.GetUtcNow();
                    if (wait > TimeSpan.Zero && !readable.IsCompleted)
                        await Task.WhenAny(readable, Task.Delay(wait, time, stoppingToken));
                }
                else await readable;
                if (readable.IsCompleted)
                {
                    if (!await readable) break; // completed: no more members
                    readable = null;
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                LogFormerFailed(logger, ex);
                readable = null;
                await Task.Delay(TimeSpan.FromSeconds(1), time, CancellationToken.None);
            }
        }
        // Members still forming stay waiting in the database: the sweep of a running replica forms their batches.
    }

    private async Task CloseAsync(ClosedBatch batch, SemaphoreSlim closes)
    {
        try
        {
            // An ordered subscription's close takes its waiting members in order under its current
            // limits (BatchStore.TakeInOrderAsync): when those are smaller than the ones this batch
            // formed under, what it left is due now too, so it is closed again at once rather than
            // left to wait for the sweep. An unordered close takes every member it was given.
            var taken = 0;
            while (true)
            {
                var result = await store.CloseAsync(batch.SubscriptionId, batch.Members, CancellationToken.None);
                if (result.Released.Count > 0)
                    scheduler.Enqueue(result.Released.Select(id => new DeliveryWork(id, batch.SubscriptionId)));
                if (result.BatchId is not { } batchId) break;
                WebhookTelemetry.BatchesFormed.Add(1);
                WebhookTelemetry.BatchedEvents.Add(result.Members);
                scheduler.Enqueue([new DeliveryWork(batchId, batch.SubscriptionId)]);
                taken += result.Members;
                if (taken >= batch.Members.Count) break;
            }
        }
        catch (Exception ex)
        {
            store.OnFailure(ex);
            LogCloseFailed(logger, ex, batch.SubscriptionId, batch.Members.Count);
        }
        finally
        {
            closes.Release();
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _closes?.Dispose();
        base.Dispose();
    }

    [LoggerMessage(LogLevel.Warning, "Could not form a batch of {Count} event(s) for subscription {SubscriptionId}; the sweep will")]
    private static partial void LogCloseFailed(ILogger logger, Exception ex, Guid subscriptionId, int count);

    [LoggerMessage(LogLevel.Error, "Batch former pass failed; continuing in 1 s")]
    private static partial void LogFormerFailed(ILogger logger, Exception ex);
}
