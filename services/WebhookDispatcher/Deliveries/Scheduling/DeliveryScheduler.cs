using System.Threading.Channels;
using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Decides what starts, in one loop per process. Deliveries arrive from the <see cref="FanOutBatcher"/>
/// (new events) and the <see cref="DeliveryConsumer"/> (retries back from the broker's delay queues,
/// re-publishes); each waits in its subscription's <see cref="EndpointLane"/> until the lane may
/// start it, so a slow, hanging or failing endpoint only ever uses its own share. Each pass claims
/// what may start in one statement (<see cref="LaneStore.ClaimAsync"/>), starts those attempts
/// (<see cref="AttemptRunner"/>) and hands their results to the <see cref="AttemptRecorder"/>.
/// </summary>
/// <remarks>
/// Nothing is lost when the process dies: a delivery is acknowledged to the broker only once its
/// row exists, waiting deliveries are rows that the reconciler of any replica takes over when
/// this process stops renewing their hold (<see cref="LaneHolds"/>), and an attempt claimed but
/// never recorded is given back by the reconciler once its lease ends (the receiver may then see
/// that POST twice). On a graceful stop the scheduler starts nothing new, lets attempts in flight
/// finish (each within its timeout), has them recorded and their retries sent, and releases its
/// holds, all before the bus stops (<see cref="IHostedLifecycleService.StoppingAsync"/> runs
/// before any service stops).
/// </remarks>
public sealed partial class DeliveryScheduler(
    LaneStore store,
    LaneHolds holds,
    LaneSettings settings,
    InsertClaims claims,
    ReplicaCounter replicas,
    AttemptRunner runner,
    AttemptRecorder recorder,
    DatabaseClock clock,
    IOptions<DeliveryOptions> options,
    TimeProvider time,
    ILogger<DeliveryScheduler> logger) : BackgroundService, IHostedLifecycleService
{
    private const int MaxClaimBatch = 500;
    private static readonly TimeSpan IdleLaneLifetime = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan HoldsLeftWake = TimeSpan.FromMilliseconds(20);

    private readonly Channel<DeliveryWork> _incoming = Channel.CreateUnbounded<DeliveryWork>(new() { SingleReader = true });
    private readonly Channel<Guid> _unresolved = Channel.CreateUnbounded<Guid>(new() { SingleReader = true });
    private readonly Channel<Completion> _completions = Channel.CreateUnbounded<Completion>(new() { SingleReader = true });
    private readonly LaneTable _lanes = new();
    private readonly ClaimPlanner _planner = new();
    private readonly List<EndpointLane> _newLanes = [];
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private int _signaled;
    private int _completionWanted; // 1 while something waits for capacity that a finishing attempt frees
    private int _running; // attempts started and not finished (all threads)
    private int _inFlight; // the loop's view
    private DateTimeOffset _claimPausedUntil;
    private DateTimeOffset _nextCleanup;

    private readonly record struct Completion(EndpointLane Lane, Guid DeliveryId, bool TimedOut, string? Destination, string? User);

    /// <summary>Replicas sharing each subscription's limits, as last counted on the broker (1 or more).</summary>
    public int Replicas => replicas.Current;

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
        await Task.Yield();
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
                // The heartbeat first: holds written in this pass need it alive.
                await holds.RenewIfDueAsync(_lanes.All, now, stop);
                await StartClaimedAsync(now, stop);
                await ResolveAsync(stop);
                await DrainIncomingAsync(now, stop);
                if (_newLanes.Count > 0)
                {
                    await settings.LoadAsync(_newLanes, stop);
                    _newLanes.Clear();
                }
                await holds.RefillAsync(_lanes.All, now, Replicas, stop);
                var more = await StartWhatMayStartAsync(now);
                PublishRoom(now);
                replicas.RefreshIfDue(now);
                if (now >= _nextCleanup)
                {
                    _nextCleanup = now + TimeSpan.FromMinutes(1);
                    _lanes.RemoveIdle(now - IdleLaneLifetime);
                }
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
        // Stopping: no new attempts. Let those in flight finish and be recorded; deliveries
        // claimed at insert and not started are given back.
        while (Volatile.Read(ref _running) > 0)
            await Task.Delay(50, CancellationToken.None);
        await GiveBackClaimedAsync();
        await recorder.DrainAsync();
        await holds.ReleaseAsync(_lanes.All);
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
        if (holds.HoldsLeft) next = now + HoldsLeftWake;
        if (_claimPausedUntil > now && _claimPausedUntil < next) next = _claimPausedUntil;
        foreach (var lane in _lanes.All)
            if (lane.NextWake(now, lane.RateSharers(Replicas)) is { } wake && wake < next) next = wake;
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
            var lane = _lanes.GetOrAdd(work.SubscriptionId, out var added);
            if (added) _newLanes.Add(lane);
            if (!lane.TryEnqueue(work.DeliveryId, now + holds.Grace, max, now))
                (overflow ??= []).Add((lane, work.DeliveryId));
        }
        // Awaited here, so a refill never overtakes it.
        if (overflow is not null) await holds.DeferAsync(overflow, stop);
    }

    private void DrainCompletions(DateTimeOffset now)
    {
        var o = options.Value;
        while (_completions.Reader.TryRead(out var c))
        {
            _inFlight--;
            _planner.Release(c.Destination, c.User);
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
        var lanes = _lanes.All;
        if (now < _claimPausedUntil || lanes.Count == 0) return false;
        var caps = Caps();
        var plan = _planner.Plan(lanes, now, budget: Math.Min(options.Value.MaxInFlight - _inFlight, MaxClaimBatch),
            caps.Subscription, caps.Destination, caps.User, caps.Replicas, out var leftWaiting);
        // An attempt that finished before the request was seen: pass again to count it.
        var finishedMeanwhile = leftWaiting && WantCompletions();
        if (plan.Count == 0) return finishedMeanwhile;

        IReadOnlyList<ClaimedDelivery> claimed;
        try
        {
            // Not cancelled by a stop: a claim that committed must start its attempts, which the
            // stop then waits for, rather than leave leases for the reconciler to give back.
            var sentAt = time.GetUtcNow();
            claimed = await store.ClaimAsync(plan.Select(p => p.Waiting.DeliveryId).ToList(), CancellationToken.None);
            if (claimed.Count > 0) clock.Observe(sentAt, claimed[0].ClaimedAt);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _planner.PutBack(plan);
            _claimPausedUntil = now + TimeSpan.FromSeconds(2);
            store.OnFailure(ex);
            LogClaimFailed(logger, ex, plan.Count);
            return false;
        }

        var byId = claimed.ToDictionary(c => c.Id);
        foreach (var (lane, waiting, destination, user) in plan)
        {
            if (!byId.TryGetValue(waiting.DeliveryId, out var delivery))
            {
                lane.NotClaimed(waiting.DeliveryId);
                _planner.Release(destination, user);
                continue;
            }
            // The claim carries the subscription as it is now (a PATCH may have changed its URL or limit).
            lane.Learn(delivery.UserId, delivery.Url, delivery.RateLimitPerSecond);
            lane.Started(now, delivery.RateLimitPerSecond);
            Start(lane, delivery, now, destination, user);
        }
        return finishedMeanwhile || plan.Count >= MaxClaimBatch || claimed.Count < plan.Count;
    }

    /// <summary>This pass's caps, each a replica's share of its setting (rounded up).</summary>
    private (int Subscription, int Destination, int User, int Replicas) Caps()
    {
        var o = options.Value;
        var n = Replicas;
        return ((o.MaxInFlightPerSubscription + n - 1) / n, (o.MaxInFlightPerHost + n - 1) / n, (o.MaxInFlightPerUser + n - 1) / n, n);
    }

    private void Start(EndpointLane lane, ClaimedDelivery delivery, DateTimeOffset now, string? destination, string? user)
    {
        _inFlight++;
        Interlocked.Increment(ref _running);
        _ = AttemptAsync(lane, delivery, now, destination, user);
    }

    /// <summary>
    /// Asks finishing attempts to wake the loop: deliveries wait that the capacity they free may
    /// start. Without that, a finish is taken into account at the next pass, and an attempt that
    /// ends wakes no thread (at moderate rates most end with nothing waiting). True when a finish
    /// arrived before the request was visible, so the caller makes another pass.
    /// </summary>
    private bool WantCompletions()
    {
        // A full fence on each side (this exchange; the decrement in AttemptAsync): either the
        // attempt sees the request, or this sees its completion.
        Interlocked.Exchange(ref _completionWanted, 1);
        return _completions.Reader.TryPeek(out _);
    }

    private async Task AttemptAsync(EndpointLane lane, ClaimedDelivery delivery, DateTimeOffset startedAt, string? destination, string? user)
    {
        var finished = await runner.RunAsync(delivery, startedAt);
        // The lane learns of the end before the record can make a retry of this delivery possible.
        _completions.Writer.TryWrite(new Completion(lane, delivery.Id, finished.Response.Outcome == AttemptOutcome.Timeout, destination, user));
        recorder.Add(finished);
        // The decrement is a full fence between writing the completion and reading the request (see WantCompletions).
        Interlocked.Decrement(ref _running);
        if (Volatile.Read(ref _completionWanted) != 0 || _stopping.IsCancellationRequested) Signal();
    }

    /// <inheritdoc />
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        claims.Close();
        await _stopping.CancelAsync();
        Signal();
        if (ExecuteTask is null) return;
        await _drained.Task.WaitAsync(cancellationToken);
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

    [LoggerMessage(LogLevel.Warning, "Subscription {SubscriptionId}: {Timeouts} timeouts in a row, circuit open for {Seconds} s; its deliveries wait without spending attempts")]
    private static partial void LogCircuitOpened(ILogger logger, Guid subscriptionId, int timeouts, int seconds);

    [LoggerMessage(LogLevel.Information, "Subscription {SubscriptionId}: endpoint answers again, circuit closed")]
    private static partial void LogCircuitClosed(ILogger logger, Guid subscriptionId);

    [LoggerMessage(LogLevel.Warning, "Could not claim {Count} delivery(ies); trying again in 2 s")]
    private static partial void LogClaimFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Warning, "Could not look up the subscription of {Count} delivery(ies); the reconciler will re-publish them")]
    private static partial void LogResolveFailed(ILogger logger, Exception ex, int count);

    [LoggerMessage(LogLevel.Error, "Delivery scheduler pass failed; continuing in 1 s")]
    private static partial void LogSchedulerFailed(ILogger logger, Exception ex);
}
