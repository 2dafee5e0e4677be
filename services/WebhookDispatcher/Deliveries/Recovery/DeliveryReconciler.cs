using MassTransit;
using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The safety net of at-least-once delivery (and the announcer of automatically disabled
/// subscriptions, <c>WebhookSubscriptionDisabled</c>): re-publishes <see cref="DeliverWebhook"/> for
/// deliveries whose next attempt is overdue (a publish lost in a crash between commit and
/// publish, a message dropped by an operator), and gives back attempts that were claimed but
/// never recorded (a process killed mid-attempt), so they are made again — never this process's
/// own (<see cref="DispatcherIdentity"/>), even when its heartbeat lapsed in a database outage.
/// </summary>
public sealed class DeliveryReconciler(
    IServiceScopeFactory scopes, RecoveryStore store, DispatcherIdentity self, IOptions<ReconcilerOptions> options, TimeProvider time,
    ILogger<DeliveryReconciler> logger)
    : BackgroundService
{
    /// <summary>Runs one pass; returns how many deliveries were re-published.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        await using var scope = scopes.CreateAsyncScope();
        var publish = scope.ServiceProvider.GetRequiredService<IPublishEndpoint>();
        var work = await store.ReclaimOverdueAsync(self.Id, TimeSpan.FromSeconds(o.GraceSeconds), o.BatchSize,
            TimeSpan.FromSeconds(Math.Max(15, 3 * o.IntervalSeconds)), TimeSpan.FromSeconds(o.SettleSeconds), cancellationToken);
        if (work.Count > 0)
        {
            // Bounded (ConfirmTimeout): unconfirmed, the pass fails with a TimeoutException, logged like
            // any failed pass, and the rows, due again, are re-published by a later one (on a new channel).
            var messages = work.Select(w => new DeliverWebhook(w.DeliveryId, w.SubscriptionId)).ToList();
            await Messaging.MessagingExtensions.SendConfirmedAsync(ct => publish.PublishBatch(messages, ct), cancellationToken);
            logger.LogWarning("Reconciler re-published {Count} overdue delivery(ies)", work.Count);
        }
        var announced = await store.AnnounceDisabledAsync((notices, ct) => publish.PublishBatch(notices, ct), cancellationToken);
        if (announced > 0)
            logger.LogWarning("Announced {Count} automatically disabled subscription(s) on the bus", announced);
        return work.Count;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Value.IntervalSeconds), time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                store.OnFailure(ex);
                logger.LogError(ex, "Reconciler pass failed; retrying in {IntervalSeconds} s", options.Value.IntervalSeconds);
            }
        }
    }
}
