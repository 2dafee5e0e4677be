using System.Threading.Channels;
using MassTransit;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Hands a failed attempt's next try to the broker: a <see cref="DeliverWebhook"/> sent to the
/// delay queue of the smallest level not shorter than the time left until it is due
/// (<c>webhook-delivery-delay-{2,4,8…}s</c>), which dead-letters it back to
/// <c>webhook-delivery</c> when its TTL ends, so the retry is never early. Sends that fail
/// (broker down, connection dropped) are tried again within seconds, with the delay recomputed
/// so the schedule holds; the reconciler covers a process that dies first.
/// </summary>
public sealed partial class RetryPublisher(IBus bus, RabbitMqTopology topology, TimeProvider time, ILogger<RetryPublisher> logger)
{
    private readonly Channel<(DeliverWebhook Message, DateTimeOffset Due)> _queue =
        Channel.CreateUnbounded<(DeliverWebhook, DateTimeOffset)>(new() { SingleReader = true });
    private readonly Lock _start = new();
    private Task? _loop;
    private int _pending;

    /// <summary>Messages scheduled and not yet accepted by the broker.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>Sends <paramref name="message"/> so that it comes back when <paramref name="due"/> has passed.</summary>
    public void Schedule(DeliverWebhook message, DateTimeOffset due)
    {
        Interlocked.Increment(ref _pending);
        _queue.Writer.TryWrite((message, due));
        lock (_start) _loop ??= Task.Run(SendLoopAsync);
    }

    /// <summary>Waits until every scheduled message was sent, at most <paramref name="timeout"/> (default 10 s).</summary>
    public async Task FlushAsync(TimeSpan? timeout = null)
    {
        var deadline = time.GetUtcNow() + (timeout ?? TimeSpan.FromSeconds(10));
        while (Pending > 0 && time.GetUtcNow() < deadline)
            await Task.Delay(20);
    }

    private async Task SendLoopAsync()
    {
        var batch = new List<(DeliverWebhook Message, DateTimeOffset Due)>();
        var wait = TimeSpan.FromMilliseconds(250);
        // A batch kept after a failed send is tried again at once, without waiting for new work.
        while (batch.Count > 0 || await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < 1000 && _queue.Reader.TryRead(out var item)) batch.Add(item);
            try
            {
                await SendAsync(batch);
                Interlocked.Add(ref _pending, -batch.Count);
                batch.Clear();
                wait = TimeSpan.FromMilliseconds(250);
            }
            catch (Exception ex)
            {
                // Keep the batch and try again: the rows say they are due, so a message lost
                // here would only come back through the reconciler, much later. A returned
                // message means a queue is missing: declare again before resending.
                LogSendFailed(logger, ex, batch.Count, wait.TotalSeconds);
                topology.ForgetDeclarations();
                await Task.Delay(wait, time);
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
    }

    private async Task SendAsync(List<(DeliverWebhook Message, DateTimeOffset Due)> batch)
    {
        var now = time.GetUtcNow();
        foreach (var group in batch.GroupBy(m => m.Due - now is var left && left > TimeSpan.Zero ? DelayLevels.RoundUp(left) : TimeSpan.Zero))
        {
            var exchange = group.Key > TimeSpan.Zero
                ? await topology.EnsureDelayAsync(DeliveryQueues.Delivery, group.Key, CancellationToken.None)
                : DeliveryQueues.Delivery;
            var endpoint = await bus.GetSendEndpoint(new Uri($"exchange:{exchange}"));
            // Bounded: an unconfirmed send is cancelled and made again, on a new channel (Messaging.MessagingExtensions.SendConfirmedAsync).
            var messages = group.Select(m => m.Message).ToList();
            await Messaging.MessagingExtensions.SendConfirmedAsync(ct => endpoint.SendBatch(messages, Mandatory, ct), CancellationToken.None);
        }
    }

    /// <summary>
    /// Sends with RabbitMQ's <c>mandatory</c> flag: an exchange whose queue an operator deleted
    /// would drop the message silently; mandatory makes the broker return it, MassTransit then
    /// throws (<c>MessageReturnedException</c>), and the send loop declares the queue again and
    /// resends.
    /// </summary>
    private static readonly IPipe<SendContext<DeliverWebhook>> Mandatory = Pipe.Execute<SendContext<DeliverWebhook>>(context =>
    {
        if (context.TryGetPayload(out RabbitMqSendContext? rabbit)) rabbit.Mandatory = true;
    });

    [LoggerMessage(LogLevel.Warning, "Could not hand {Count} retry(ies) to the broker; trying again in {Seconds} s")]
    private static partial void LogSendFailed(ILogger logger, Exception ex, int count, double seconds);
}
