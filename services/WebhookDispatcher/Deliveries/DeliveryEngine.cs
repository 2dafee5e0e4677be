using System.Threading.Channels;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Messaging.BrokerDelay;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Runs the attempts of one process. Deliveries arrive from the fan-out (new events) and the
/// delivery consumer (retries coming back from the broker's delay queues, re-publishes); each
/// waits in its subscription's <see cref="EndpointLane"/> until the lane may start it, so a slow,
/// hanging or failing endpoint only ever uses its own share. The scheduler claims what may start
/// in one statement, the attempts run concurrently, and a recorder stores their outcomes in
/// batches and hands failed attempts with attempts left to the <see cref="RetryScheduler"/>.
/// </summary>
/// <remarks>
/// Nothing is lost when the process dies: a delivery is acknowledged to the broker only once its
/// row exists, waiting deliveries are rows that the reconciler of any replica takes over when
/// this process stops renewing their hold, and an attempt claimed but never recorded is given
/// back by the reconciler once its lease ends (the receiver may then see that POST twice).
/// On a graceful stop the engine starts nothing new, lets attempts in flight finish (each within
/// its timeout), records them, sends their retries and releases its holds, all before the bus
/// stops (<see cref="IHostedLifecycleService.StoppingAsync"/> runs before any service stops).
/// </remarks>
public sealed partial class DeliveryEngine(
    DeliveryStore store,
    WebhookSender sender,
    RetryScheduler retries,
    RabbitMqTopology topology,
    IOptions<DeliveryOptions> options,
    IOptions<ReconcilerOptions> reconciler,
    TimeProvider time,
    ILogger<DeliveryEngine> logger) : BackgroundService, IHostedLifecycleService
{
    /// <summary>The queue whose consumers are the replicas (for splitting per-subscription limits).</summary>
    public const string DeliveryQueue = "webhook-delivery";

    private const int MaxClaimBatch = 500;
    private const int MaxRecordBatch = 500;
    private const int MaxBacklogTake = 5000;
    private static readonly TimeSpan RecordLinger = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan FanOutLinger = TimeSpan.FromMilliseconds(5);
    private const int LingerBelow = 16; // a batch this small waits a linger for more
    private static readonly TimeSpan BacklogHold = TimeSpan.FromSeconds(60);

    private readonly Channel<DeliveryWork> _incoming = Channel.CreateUnbounded<DeliveryWork>(new() { SingleReader = true });
    private readonly Channel<Guid> _unresolved = Channel.CreateUnbounded<Guid>(new() { SingleReader = true });
    private readonly Channel<Completion> _completions = Channel.CreateUnbounded<Completion>(new() { SingleReader = true });
    private readonly Channel<FinishedAttempt> _finished = Channel.CreateUnbounded<FinishedAttempt>(new() { SingleReader = true });
    private readonly Channel<PendingFanOut> _fanOut = Channel.CreateUnbounded<PendingFanOut>(new() { SingleReader = true });
    private readonly Dictionary<Guid, EndpointLane> _lanes = [];
    private readonly List<EndpointLane> _order = [];
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private int _signaled;
    private int _completionWanted; // 1 while something waits for capacity that a finishing attempt frees
    private int _running; // attempts started and not finished (all threads)
    private int _inFlight; // scheduler's view
    private int _replicas = 1;
    private int _roundRobin;
    private DateTimeOffset _claimPausedUntil;
    private DateTimeOffset _nextHoldPass;
    private DateTimeOffset _nextBacklogHold;
    private DateTimeOffset _nextReplicaCount;
    private DateTimeOffset _nextCleanup;
    private Task _recorder = Task.CompletedTask;
    private Task _fanOutWriter = Task.CompletedTask;

    private readonly record struct Completion(EndpointLane Lane, Guid DeliveryId, bool TimedOut);

    private sealed record PendingFanOut(FanOutEvent Event, TaskCompletionSource Done);

    private TimeSpan Grace => TimeSpan.FromSeconds(reconciler.Value.GraceSeconds);

    /// <summary>Replicas sharing each subscription's limits, as last counted on the broker (1 or more).</summary>
    public int Replicas => Volatile.Read(ref _replicas);

    /// <summary>
    /// Stores one delivery per matching subscription of <paramref name="evt"/> (batched with
    /// other events arriving meanwhile: one statement per batch) and queues them for attempts.
    /// Completes once the rows are committed, so the caller may acknowledge the event.
    /// </summary>
    /// <exception cref="Npgsql.NpgsqlException">The database failed; nothing was stored for this event.</exception>
    public Task FanOutAsync(FanOutEvent evt)
    {
        // Continuations run synchronously, in the one work item that completes the whole batch
        // (CompleteBatch): one thread wake-up per batch instead of one per event.
        var pending = new PendingFanOut(evt, new TaskCompletionSource());
        if (_fanOut.Writer.TryWrite(pending))
            return pending.Done.Task;
        // The batch writer has stopped (the host is stopping, consumers still run): store this
        // event alone; its deliveries wait in the database for a running replica.
        return store.FanOutAsync([evt], time.GetUtcNow(), CancellationToken.None);
    }

    /// <summary>
    /// Queues deliveries for an attempt when due. When the process is stopping they are left to
    /// the database (the reconciler of a running replica takes them).
    /// </summary>
    public void Enqueue(IEnumerable<DeliveryWork> work)
    {
        if (_stopping.IsCancellationRequested) return;
        foreach (var w in work) _incoming.Writer.TryWrite(w);
        Signal();
    }

    /// <summary>Queues deliveries whose subscription is not known yet (messages from before it was carried).</summary>
    public void EnqueueUnresolved(Guid deliveryId)
    {
        if (_stopping.IsCancellationRequested) return;
        _unresolved.Writer.TryWrite(deliveryId);
        Signal();
    }

    private void Signal()
    {
        if (Interlocked.Exchange(ref _signaled, 1) != 0) return;
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
        _recorder = Task.Run(RecordLoopAsync, CancellationToken.None);
        _fanOutWriter = Task.Run(FanOutLoopAsync, CancellationToken.None);
        var stop = _stopping.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                // Consume the pending wake-up before clearing the flag, so a signal that comes while
                // this pass runs always leaves a wake-up for the next wait.
                while (_wake.Wait(0)) { }
                Volatile.Write(ref _signaled, 0);
                var now = time.GetUtcNow();
                // Finished attempts first: a delivery whose attempt ended (a manual retry of it, its
                // next attempt) must not be taken for one still in flight.
                DrainCompletions(now);
                await ResolveAsync(stop);
                await DrainIncomingAsync(now, stop);
                await RefillFromBacklogsAsync(now, stop);
                var more = await StartWhatMayStartAsync(now);
                await HousekeepingAsync(now, stop);
                if (!more) await WaitAsync(NextWake(now) - now, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                LogSchedulerFailed(logger, ex);
                await Task.Delay(TimeSpan.FromSeconds(1), time, CancellationToken.None);
            }
        }
        // Stopping: no new attempts. Let those in flight finish and be recorded.
        while (Volatile.Read(ref _running) > 0)
            await Task.Delay(50, CancellationToken.None);
        _finished.Writer.TryComplete();
        await _recorder;
        await retries.FlushAsync();
        await ReleaseHoldsAsync();
        _drained.TrySetResult();
    }

    private async Task WaitAsync(TimeSpan wait, CancellationToken stop)
    {
        if (wait <= TimeSpan.Zero) return;
        if (wait > TimeSpan.FromSeconds(1)) wait = TimeSpan.FromSeconds(1);
        await _wake.WaitAsync(wait, stop);
    }

    private DateTimeOffset NextWake(DateTimeOffset now)
    {
        var next = now + TimeSpan.FromSeconds(1);
        if (_claimPausedUntil > now && _claimPausedUntil < next) next = _claimPausedUntil;
        foreach (var lane in _order)
            if (lane.NextWake(now, _replicas) is { } wake && wake < next) next = wake;
        return next;
    }

    private async Task ResolveAsync(CancellationToken stop)
    {
        if (!_unresolved.Reader.TryPeek(out _)) return;
        var ids = new List<Guid>();
        while (ids.Count < MaxClaimBatch && _unresolved.Reader.TryRead(out var id)) ids.Add(id);
        try
        {
            foreach (var w in await store.FindSubscriptionsAsync(ids, stop))
                _incoming.Writer.TryWrite(w);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Left to the reconciler: the rows say when they are due.
            store.OnFailure(ex);
            LogResolveFailed(logger, ex, ids.Count);
        }
    }

    private async Task DrainIncomingAsync(DateTimeOffset now, CancellationToken stop)
    {
        List<(EndpointLane Lane, Guid Id)>? overflow = null;
        var max = options.Value.MaxQueuedPerSubscription;
        while (_incoming.Reader.TryRead(out var work))
        {
            if (!_lanes.TryGetValue(work.SubscriptionId, out var lane))
            {
                lane = new EndpointLane(work.SubscriptionId);
                _lanes.Add(work.SubscriptionId, lane);
                _order.Add(lane);
            }
            if (!lane.TryEnqueue(work.DeliveryId, now + Grace, max, now))
                (overflow ??= []).Add((lane, work.DeliveryId));
        }
        if (overflow is null) return;
        // Deliveries beyond a lane's bound wait in the subscription's backlog in the database
        // (held by this process), and come back as the lane drains: memory stays bounded and the
        // other lanes are not held up. Awaited here, so a refill never overtakes it.
        try
        {
            await store.DeferToBacklogAsync(overflow.Select(o => o.Id).ToList(), now, now + BacklogHold, stop);
            foreach (var lane in overflow.Select(o => o.Lane).Distinct().Where(l => !l.Backlogged))
            {
                lane.Backlogged = true;
                LogBacklogStarted(logger, lane.SubscriptionId, lane.Queued);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Their rows are due and not held: the reconciler re-publishes them.
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, overflow.Count);
        }
    }

    /// <summary>Lanes with a backlog and room take the oldest of it back, up to half their bound at a time.</summary>
    private async Task RefillFromBacklogsAsync(DateTimeOffset now, CancellationToken stop)
    {
        var max = options.Value.MaxQueuedPerSubscription;
        foreach (var lane in _order)
        {
            if (!lane.Backlogged || lane.Queued > max / 2) continue;
            var limit = Math.Min(MaxBacklogTake, Math.Max(1, max - lane.Queued));
            try
            {
                var ids = await store.TakeBacklogAsync(lane.SubscriptionId, limit, now, now + Grace, stop);
                foreach (var id in ids) lane.TryEnqueue(id, now + Grace, max, now, fromBacklog: true);
                if (ids.Count < limit) lane.Backlogged = false;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                store.OnFailure(ex);
                LogHoldFailed(logger, ex, limit);
                return;
            }
        }
    }

    private void DrainCompletions(DateTimeOffset now)
    {
        var o = options.Value;
        while (_completions.Reader.TryRead(out var c))
        {
            _inFlight--;
            var wasOpen = c.Lane.Circuit;
            c.Lane.Finished(c.DeliveryId, c.TimedOut, now, o.CircuitBreakerTimeouts, TimeSpan.FromSeconds(o.CircuitBreakSeconds));
            if (wasOpen != CircuitState.Open && c.Lane.Circuit == CircuitState.Open)
                LogCircuitOpened(logger, c.Lane.SubscriptionId, c.Lane.ConsecutiveTimeouts, o.CircuitBreakSeconds);
            else if (wasOpen != CircuitState.Closed && c.Lane.Circuit == CircuitState.Closed)
                LogCircuitClosed(logger, c.Lane.SubscriptionId);
        }
    }

    /// <summary>Claims and starts what the lanes allow, round robin; true when more could start at once.</summary>
    private async Task<bool> StartWhatMayStartAsync(DateTimeOffset now)
    {
        Volatile.Write(ref _completionWanted, 0);
        if (now < _claimPausedUntil || _order.Count == 0) return false;
        var o = options.Value;
        var cap = (o.MaxInFlightPerSubscription + _replicas - 1) / _replicas;
        var budget = Math.Min(o.MaxInFlight - _inFlight, MaxClaimBatch);
        var plan = new List<(EndpointLane Lane, EndpointLane.Waiting Waiting)>();
        var start = _roundRobin++ % _order.Count;
        var leftWaiting = budget <= 0;
        for (var i = 0; i < _order.Count && budget > 0; i++)
        {
            var lane = _order[(start + i) % _order.Count];
            var n = Math.Min(lane.Startable(now, cap, _replicas), budget);
            if (n > 0)
            {
                foreach (var w in lane.Take(n)) plan.Add((lane, w));
                budget -= n;
            }
            leftWaiting |= lane.Queued > 0 || lane.Backlogged || budget <= 0;
        }
        // An attempt that finished before the request was seen: pass again to count it.
        var finishedMeanwhile = leftWaiting && WantCompletions();
        if (plan.Count == 0) return finishedMeanwhile;

        IReadOnlyList<ClaimedDelivery> claimed;
        // The claim time is also the claim's token: the record stores an attempt only while the
        // delivery still carries it, so it is cut to what the database stores.
        var claimedAt = now.ToDatabasePrecision();
        try
        {
            // Not cancelled by a stop: a claim that committed must start its attempts, which the
            // stop then waits for, rather than leave leases for the reconciler to give back.
            claimed = await store.ClaimAsync(plan.Select(p => p.Waiting.DeliveryId).ToList(), claimedAt, CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            foreach (var group in plan.GroupBy(p => p.Lane))
                group.Key.PutBack(group.Select(p => p.Waiting).ToList());
            _claimPausedUntil = now + TimeSpan.FromSeconds(2);
            store.OnFailure(ex);
            LogClaimFailed(logger, ex, plan.Count);
            return false;
        }

        var byId = claimed.ToDictionary(c => c.Id);
        foreach (var (lane, waiting) in plan)
        {
            if (!byId.TryGetValue(waiting.DeliveryId, out var delivery))
            {
                lane.NotClaimed(waiting.DeliveryId);
                continue;
            }
            lane.Started(now, delivery.RateLimitPerSecond);
            _inFlight++;
            Interlocked.Increment(ref _running);
            _ = AttemptAsync(lane, delivery, claimedAt);
        }
        return finishedMeanwhile || plan.Count >= MaxClaimBatch || claimed.Count < plan.Count;
    }

    /// <summary>
    /// Asks finishing attempts to wake the scheduler: deliveries wait that the capacity they free
    /// may start. Without that, a finish is taken into account at the next pass, and an attempt
    /// that ends wakes no thread (at moderate rates most end with nothing waiting). True when a
    /// finish arrived before the request was visible, so the caller makes another pass.
    /// </summary>
    private bool WantCompletions()
    {
        // A full fence on each side (this exchange; the decrement in AttemptAsync): either the
        // attempt sees the request, or this sees its completion.
        Interlocked.Exchange(ref _completionWanted, 1);
        return _completions.Reader.TryPeek(out _);
    }

    /// <param name="lane">The delivery's lane, told when the attempt ends.</param>
    /// <param name="delivery">The claimed delivery.</param>
    /// <param name="startedAt">The attempt's start as the lane counted it (its rate limit), stored as <c>attempted_at</c>.</param>
    private async Task AttemptAsync(EndpointLane lane, ClaimedDelivery delivery, DateTimeOffset startedAt)
    {
        WebhookResponse response;
        try
        {
            var request = SignedWebhook.Create(delivery.Url, delivery.Payload, delivery.EventType, delivery.Id, delivery.EventId,
                SignedWebhook.ActiveSecrets(delivery.Secret, delivery.PreviousSecret, delivery.PreviousSecretExpiresAt, startedAt),
                delivery.TimeoutSeconds, startedAt);
            // Once claimed, the attempt runs to its own deadline and is recorded even if the host
            // is stopping: cancelling it halfway would leave a POST the receiver may have handled
            // with no record.
            response = await sender.SendAsync(request, CancellationToken.None);
        }
        catch (Exception ex)
        {
            response = new WebhookResponse(AttemptOutcome.ConnectionError, null, null,
                WebhookSender.Storable("The request could not be made: " + ex.Message, WebhookSender.MaxErrorChars), TimeSpan.Zero, null);
        }
        var finishedAt = time.GetUtcNow();
        var decision = AttemptDecision.Decide(delivery.AttemptNumber, delivery.MaxAttempts, response, finishedAt, delivery.RoundFirstAttempt);
        // The lane learns of the end before the record can make a retry of this delivery possible.
        _completions.Writer.TryWrite(new Completion(lane, delivery.Id, response.Outcome == AttemptOutcome.Timeout));
        _finished.Writer.TryWrite(new FinishedAttempt(delivery, startedAt, response, decision, finishedAt));
        // The decrement is a full fence between writing the completion and reading the request (see WantCompletions).
        Interlocked.Decrement(ref _running);
        if (Volatile.Read(ref _completionWanted) != 0 || _stopping.IsCancellationRequested) Signal();
    }

    private async Task RecordLoopAsync()
    {
        var batch = new List<FinishedAttempt>(MaxRecordBatch);
        while (await _finished.Reader.WaitToReadAsync())
        {
            // Nothing waits on a record but statistics and retry messages, so it lingers longer.
            await GatherAsync(_finished.Reader, batch, MaxRecordBatch, RecordLinger);
            var moved = await RecordWithRetryAsync(batch);
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

    /// <summary>Records a batch, retrying while the database is unavailable: a result kept in memory beats one thrown away.</summary>
    private async Task<IReadOnlySet<Guid>> RecordWithRetryAsync(List<FinishedAttempt> batch)
    {
        var wait = TimeSpan.FromMilliseconds(250);
        while (true)
        {
            try
            {
                return await store.RecordAsync(batch, CancellationToken.None);
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

    private async Task FanOutLoopAsync()
    {
        var batch = new List<PendingFanOut>();
        while (await _fanOut.Reader.WaitToReadAsync())
        {
            // The event waits for its commit (one insert and one claim per batch), so the linger adds to its latency.
            await GatherAsync(_fanOut.Reader, batch, options.Value.FanOutBatchSize, FanOutLinger);
            var seen = new HashSet<Guid>();
            var events = new List<FanOutEvent>();
            foreach (var p in batch)
                if (seen.Add(p.Event.EventId)) events.Add(p.Event);
            try
            {
                var work = await store.FanOutAsync(events, time.GetUtcNow().ToUniversalTime(), CancellationToken.None);
                Enqueue(work);
                CompleteBatch([.. batch], null);
            }
            catch (Exception ex)
            {
                store.OnFailure(ex);
                CompleteBatch([.. batch], ex);
            }
        }
    }

    /// <summary>
    /// Fills <paramref name="batch"/> (cleared first) with up to <paramref name="max"/> items
    /// already queued; when fewer than <see cref="LingerBelow"/> were, waits <paramref name="linger"/>
    /// and takes those that arrived meanwhile. At moderate rates batches stay small otherwise, and
    /// every statement costs its round trip and planning.
    /// </summary>
    private static async Task GatherAsync<T>(ChannelReader<T> reader, List<T> batch, int max, TimeSpan linger)
    {
        batch.Clear();
        while (batch.Count < max && reader.TryRead(out var item)) batch.Add(item);
        if (batch.Count >= LingerBelow) return;
        await Task.Delay(linger, CancellationToken.None);
        while (batch.Count < max && reader.TryRead(out var item)) batch.Add(item);
    }

    /// <summary>
    /// Completes the consumers waiting on a fan-out batch (each then acknowledges its event) on a
    /// thread-pool thread, off this loop, which goes on gathering the next batch meanwhile.
    /// </summary>
    private static void CompleteBatch(PendingFanOut[] batch, Exception? failure) =>
        ThreadPool.UnsafeQueueUserWorkItem(static state =>
        {
            foreach (var p in state.Batch)
                if (state.Failure is null) p.Done.TrySetResult();
                else p.Done.TrySetException(state.Failure);
        }, (Batch: batch, Failure: failure), preferLocal: false);

    private async Task HousekeepingAsync(DateTimeOffset now, CancellationToken stop)
    {
        if (now >= _nextHoldPass)
        {
            _nextHoldPass = now + TimeSpan.FromSeconds(1);
            await RenewHoldsAsync(now, stop);
        }
        if (now >= _nextBacklogHold)
        {
            _nextBacklogHold = now + BacklogHold / 3;
            var backlogged = _order.Where(l => l.Backlogged).Select(l => l.SubscriptionId).ToList();
            if (backlogged.Count > 0)
            {
                try
                {
                    await store.HoldBacklogsAsync(backlogged, now + BacklogHold, stop);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    store.OnFailure(ex);
                    LogHoldFailed(logger, ex, backlogged.Count);
                }
            }
        }
        if (now >= _nextReplicaCount)
        {
            _nextReplicaCount = now + TimeSpan.FromSeconds(15);
            _ = CountReplicasAsync();
        }
        if (now >= _nextCleanup)
        {
            _nextCleanup = now + TimeSpan.FromMinutes(1);
            foreach (var idle in _order.Where(l => l.IsIdle && now - l.LastActivity > TimeSpan.FromMinutes(5)).ToList())
            {
                _lanes.Remove(idle.SubscriptionId);
                _order.Remove(idle);
            }
        }
    }

    /// <summary>Deliveries that have waited here for half the grace get a hold, so no reconciler re-publishes them meanwhile.</summary>
    private async Task RenewHoldsAsync(DateTimeOffset now, CancellationToken stop)
    {
        var due = _order.SelectMany(l => l.WaitingDeliveries).Where(w => w.HeldUntil - now < Grace / 2).ToList();
        if (due.Count == 0) return;
        var until = now + Grace;
        try
        {
            foreach (var chunk in due.Chunk(5000))
                await store.HoldAsync(chunk.Select(w => w.DeliveryId).ToList(), until, stop);
            foreach (var w in due) w.HeldUntil = until;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, due.Count);
        }
    }

    /// <summary>On a graceful stop, gives the waiting deliveries and backlogs back at once, so other replicas need not wait for the holds to run out.</summary>
    private async Task ReleaseHoldsAsync()
    {
        var waiting = _order.SelectMany(l => l.WaitingDeliveries).Select(w => w.DeliveryId).ToList();
        var backlogged = _order.Where(l => l.Backlogged).Select(l => l.SubscriptionId).ToList();
        try
        {
            foreach (var chunk in waiting.Chunk(5000))
                await store.HoldAsync(chunk, null, CancellationToken.None);
            if (backlogged.Count > 0)
                await store.HoldBacklogsAsync(backlogged, time.GetUtcNow(), CancellationToken.None);
        }
        catch (Exception ex)
        {
            store.OnFailure(ex);
            LogHoldFailed(logger, ex, waiting.Count);
        }
    }

    private async Task CountReplicasAsync()
    {
        try
        {
            var consumers = await topology.ConsumerCountAsync(DeliveryQueue, CancellationToken.None);
            Volatile.Write(ref _replicas, Math.Max(1, (int)(consumers ?? 1)));
        }
        catch (Exception ex)
        {
            LogReplicaCountFailed(logger, ex);
        }
    }

    /// <inheritdoc />
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        Signal();
        if (ExecuteTask is null) return;
        await _drained.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _fanOut.Writer.TryComplete();
        await _fanOutWriter.WaitAsync(cancellationToken);
        await base.StopAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public override void Dispose()
    {
        _stopping.Dispose();
        _wake.Dispose();
        base.Dispose();
    }

    [LoggerMessage(LogLevel.Debug, "Delivery {DeliveryId} attempt {Attempt}/{MaxAttempts}: {Outcome} {StatusCode} in {DurationMs} ms -> {Status}")]
    private static partial void LogAttempt(ILogger logger, Guid deliveryId, int attempt, int maxAttempts, string outcome, int? statusCode,
        int durationMs, string status);

    [LoggerMessage(LogLevel.Warning, "Subscription {SubscriptionId}: {Timeouts} timeouts in a row, circuit open for {Seconds} s; its deliveries wait without spending attempts")]
    private static partial void LogCircuitOpened(ILogger logger, Guid subscriptionId, int timeouts, int seconds);

    [LoggerMessage(LogLevel.Information, "Subscription {SubscriptionId}: endpoint answers again, circuit closed")]
    private static partial void LogCircuitClosed(ILogger logger, Guid subscriptionId);

    [LoggerMessage(LogLevel.Warning, "Could not claim {Count} delivery(ies); trying again in 2 s")]
    private static partial void LogClaimFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Warning, "Could not record {Count} attempt(s); trying again in {Seconds} s")]
    private static partial void LogRecordFailed(ILogger logger, Exception ex, int count, double seconds);

    [LoggerMessage(LogLevel.Warning, "Could not hold {Count} waiting delivery(ies); the reconciler may re-publish them (harmless)")]
    private static partial void LogHoldFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Information, "Subscription {SubscriptionId}: {Queued} deliveries wait in its lane; more wait in its backlog in the database until there is room")]
    private static partial void LogBacklogStarted(ILogger logger, Guid subscriptionId, int queued);

    [LoggerMessage(LogLevel.Warning, "Could not look up the subscription of {Count} delivery(ies); the reconciler will re-publish them")]
    private static partial void LogResolveFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Debug, "Could not count the replicas on the broker; keeping the last count")]
    private static partial void LogReplicaCountFailed(ILogger logger, Exception ex);

    [LoggerMessage(LogLevel.Error, "Delivery scheduler pass failed; continuing in 1 s")]
    private static partial void LogSchedulerFailed(ILogger logger, Exception ex);
}
