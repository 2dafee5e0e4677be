using System.ComponentModel.DataAnnotations;
using MassTransit;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Messaging;

namespace WebhookDispatcher.Deliveries;

/// <summary>Settings of the <see cref="DeliveryReconciler"/> (section <c>Reconciler</c>).</summary>
public sealed class ReconcilerOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Reconciler";

    /// <summary>Seconds between two passes (1–3600). Default 5.</summary>
    [Range(1, 3600)]
    public int IntervalSeconds { get; set; } = 5;

    /// <summary>
    /// Seconds a delivery may be overdue before it is re-published (10–86400). Default 10.
    /// Deliveries waiting in a replica's lanes for capacity are held meanwhile (the hold is
    /// renewed every half grace), and an attempt in flight is leased for its timeout plus 30 s, so
    /// this only has to cover a message's trip through the broker. A duplicate is harmless: the
    /// claim lets only one of them attempt.
    /// </summary>
    [Range(10, 86400)]
    public int GraceSeconds { get; set; } = 10;

    /// <summary>
    /// Seconds the reconcilers must have run without a gap (after a database outage, or with no
    /// dispatcher running) before an attempt claimed and never recorded is given back and made
    /// again (0–600). Default 30: a live process that kept the answer in memory through the outage
    /// records it within seconds of the database's return, and wins.
    /// </summary>
    [Range(0, 600)]
    public int SettleSeconds { get; set; } = 30;

    /// <summary>Deliveries re-published per pass at most (1–10000).</summary>
    [Range(1, 10000)]
    public int BatchSize { get; set; } = 500;
}

/// <summary>
/// The safety net of at-least-once delivery (and the announcer of automatically disabled
/// subscriptions, <c>WebhookSubscriptionDisabled</c>): re-publishes <see cref="DeliverWebhook"/> for
/// deliveries whose next attempt is overdue (a publish lost in a crash between commit and
/// publish, a message dropped by an operator), and gives back attempts that were claimed but
/// never recorded (a process killed mid-attempt), so they are made again.
/// </summary>
public sealed class DeliveryReconciler(
    IServiceScopeFactory scopes, DeliveryStore store, IOptions<ReconcilerOptions> options, TimeProvider time, ILogger<DeliveryReconciler> logger)
    : BackgroundService
{
    /// <summary>Runs one pass; returns how many deliveries were re-published.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        await using var scope = scopes.CreateAsyncScope();
        var publish = scope.ServiceProvider.GetRequiredService<IPublishEndpoint>();
        var work = await store.ReclaimOverdueAsync(time.GetUtcNow(), TimeSpan.FromSeconds(o.GraceSeconds), o.BatchSize,
            TimeSpan.FromSeconds(Math.Max(15, 3 * o.IntervalSeconds)), TimeSpan.FromSeconds(o.SettleSeconds), cancellationToken);
        if (work.Count > 0)
        {
            await publish.PublishBatch(work.Select(w => new DeliverWebhook(w.DeliveryId, w.SubscriptionId)), cancellationToken);
            logger.LogWarning("Reconciler re-published {Count} overdue delivery(ies)", work.Count);
        }
        var announced = await store.AnnounceDisabledAsync(notices => publish.PublishBatch(notices, cancellationToken), cancellationToken);
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
