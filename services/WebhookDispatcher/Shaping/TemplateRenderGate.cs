namespace WebhookDispatcher.Shaping;

/// <summary>
/// Takes turns for template renderings, so that one tenant's costly templates cannot take the
/// process's cores from the others (issue 14: one tenant cannot slow down another). At most
/// <see cref="Environment.ProcessorCount"/> renderings run at once, one user's at most one fewer
/// (so on 2 cores, one at a time). When a turn frees, it goes to the waiting user whose renderings
/// took the least time lately (their rendering time in all, halved every <see cref="HalfLife"/>),
/// oldest request first within a user: when users ask for more rendering than the cores have, each
/// gets an equal share of their time (a user whose templates are cheap is served first; one asking
/// for more than its share, by costly templates or by many events, waits). A
/// rendering's own time limit (<see cref="TemplateRenderer.MaxRenderTime"/>) counts from its
/// start, not while it waits. One that has waited its longest wait does not run (a transient
/// error: deliveries retry it), so that no attempt runs late past its lease.
/// </summary>
public sealed class TemplateRenderGate : IDisposable
{
    /// <summary>The longest a delivery's rendering waits for its turn: 10 s, well within an attempt's lease margin (<see cref="Deliveries.LaneStore.LeaseMarginSeconds"/>).</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(10);

    /// <summary>How fast past rendering time is forgotten: halved every 10 s.</summary>
    public static readonly TimeSpan HalfLife = TimeSpan.FromSeconds(10);

    /// <summary>The error of a rendering that did not get its turn within its longest wait (a transient one).</summary>
    public static readonly string WaitedTooLong =
        "The template did not get a turn to render in time: renderings take turns, and the users whose templates took the most time " +
        "lately wait the longest. Nothing was sent.";

    private readonly object _lock = new();
    private readonly Dictionary<string, User> _users = new(StringComparer.Ordinal);
    private readonly int _perUser;
    private readonly TimeProvider _time;
    private int _free;
    private int _releases;

    private sealed class User
    {
        public double Seconds; // rendering time, decayed to Since
        public long Since;
        public int Running;
        public readonly Queue<Waiter> Waiting = new();
    }

    private sealed class Waiter(string userId) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public string UserId { get; } = userId;
    }

    /// <summary>A gate with one turn per core.</summary>
    public TemplateRenderGate() : this(Environment.ProcessorCount, TimeProvider.System) { }

    /// <summary>A gate with <paramref name="turns"/> turns at once (1 or more), one user's at most <c>max(1, turns - 1)</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="turns"/> is under 1.</exception>
    public TemplateRenderGate(int turns, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(turns, 1);
        _free = turns;
        _perUser = Math.Max(1, turns - 1);
        _time = time;
    }

    /// <summary>
    /// Runs <paramref name="render"/> (synchronously, on the thread that got the turn) in
    /// <paramref name="userId"/>'s turn and charges its time to them. Returns its result, or a
    /// transient error (<see cref="WaitedTooLong"/>) when no turn came within <paramref name="maxWait"/>
    /// (<see cref="MaxWait"/> when null).
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public async Task<RenderedBody> RunAsync(string userId, Func<RenderedBody> render, CancellationToken cancellationToken, TimeSpan? maxWait = null)
    {
        var waiter = new Waiter(userId);
        lock (_lock)
        {
            Find(userId).Waiting.Enqueue(waiter);
            Dispatch();
        }
        if (!waiter.Task.IsCompleted)
        {
            try
            {
                await waiter.Task.WaitAsync(maxWait ?? MaxWait, _time, cancellationToken);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                lock (_lock)
                {
                    // Given its turn at the last moment: take it after all.
                    if (!waiter.Task.IsCompleted)
                    {
                        waiter.TrySetCanceled();
                        Forget(userId);
                        if (ex is OperationCanceledException) throw;
                        return new RenderedBody([], WebhookTemplate.DefaultContentType, WaitedTooLong, Transient: true);
                    }
                }
            }
        }
        var started = _time.GetTimestamp();
        try
        {
            return render();
        }
        finally
        {
            lock (_lock)
            {
                var user = Find(userId);
                user.Seconds += _time.GetElapsedTime(started).TotalSeconds;
                user.Running--;
                _free++;
                Dispatch();
                Forget(userId);
                if (++_releases % 256 == 0)
                    foreach (var idle in _users.Keys.ToList()) Forget(idle);
            }
        }
    }

    /// <summary>The renderings waiting for a turn now (for tests and diagnostics).</summary>
    public int Waiting
    {
        get
        {
            lock (_lock) return _users.Values.Sum(u => u.Waiting.Count(w => !w.Task.IsCompleted));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_lock)
            foreach (var user in _users.Values)
                while (user.Waiting.TryDequeue(out var waiter)) waiter.TrySetCanceled();
    }

    // Under _lock: gives free turns to the waiting users who rendered least lately.
    private void Dispatch()
    {
        var now = _time.GetTimestamp();
        while (_free > 0)
        {
            User? next = null;
            var least = double.MaxValue;
            foreach (var user in _users.Values)
            {
                while (user.Waiting.TryPeek(out var w) && w.Task.IsCompleted) user.Waiting.Dequeue(); // gave up
                if (user.Waiting.Count == 0 || user.Running >= _perUser) continue;
                var seconds = Decayed(user, now);
                if (seconds < least) (next, least) = (user, seconds);
            }
            if (next is null) return;
            var waiter = next.Waiting.Dequeue();
            next.Running++;
            _free--;
            waiter.TrySetResult();
        }
    }

    private double Decayed(User user, long now)
    {
        var elapsed = _time.GetElapsedTime(user.Since, now);
        user.Seconds *= Math.Pow(0.5, elapsed / HalfLife);
        user.Since = now;
        return user.Seconds;
    }

    private User Find(string userId)
    {
        if (!_users.TryGetValue(userId, out var user))
            _users[userId] = user = new User { Since = _time.GetTimestamp() };
        return user;
    }

    // Under _lock: drops a user with nothing running, nothing waiting and next to no time left to count.
    private void Forget(string userId)
    {
        if (_users.TryGetValue(userId, out var user) && user.Running == 0 && user.Waiting.All(w => w.Task.IsCompleted)
            && Decayed(user, _time.GetTimestamp()) < 0.001)
            _users.Remove(userId);
    }
}
