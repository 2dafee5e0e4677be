namespace WebhookDispatcher.Deliveries;

/// <summary>The state of a subscription's circuit breaker.</summary>
public enum CircuitState
{
    /// <summary>Attempts start as capacity allows.</summary>
    Closed,

    /// <summary>Too many consecutive timeouts: nothing starts until the break ends.</summary>
    Open,

    /// <summary>The break ended: one probe attempt may start; its outcome closes or reopens the circuit.</summary>
    HalfOpen,
}

/// <summary>
/// The deliveries of one subscription in one process, and the decision of how many may start
/// now: at most a concurrency cap in flight, at most a rate per second, nothing while the
/// circuit is open. Waiting here never spends an attempt (a delivery is claimed only when it
/// starts). Pure bookkeeping without I/O or locks: the <see cref="DeliveryScheduler"/>
/// is its only user, and passes the time in.
/// </summary>
public sealed class EndpointLane(Guid subscriptionId)
{
    private readonly Queue<Waiting> _queue = new();
    private readonly HashSet<Guid> _known = [];
    private readonly Queue<DateTimeOffset> _starts = new();
    private bool _probeInFlight;

    /// <summary>A delivery waiting for capacity, and until when the database knows it is held here.</summary>
    public sealed class Waiting(Guid deliveryId, DateTimeOffset heldUntil)
    {
        /// <summary>The delivery.</summary>
        public Guid DeliveryId { get; } = deliveryId;

        /// <summary>Until when no reconciler takes it (its due time plus the grace, or a hold written since).</summary>
        public DateTimeOffset HeldUntil { get; set; } = heldUntil;
    }

    /// <summary>The subscription.</summary>
    public Guid SubscriptionId { get; } = subscriptionId;

    /// <summary>Deliveries waiting.</summary>
    public int Queued => _queue.Count;

    /// <summary>Attempts started and not finished.</summary>
    public int InFlight { get; private set; }

    /// <summary>The subscription's rate limit (deliveries per second, all replicas together); null for none.</summary>
    public int? RateLimitPerSecond { get; private set; }

    /// <summary>Whether the subscription's settings are known (loaded when the lane is made, or learned from a claim).</summary>
    public bool SettingsKnown { get; private set; }

    /// <summary>
    /// The destination this lane shares a concurrency limit with: the subscription's user and its
    /// URL's host and port (see <see cref="DestinationKey"/>); null while the settings are unknown.
    /// </summary>
    public string? Destination { get; private set; }

    /// <summary>The key of a destination: the user and the URL's host and port, lower-case; the URL itself when it does not parse.</summary>
    public static string DestinationKey(string userId, string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) ? $"{userId}\n{uri.IdnHost.ToLowerInvariant()}:{uri.Port}" : $"{userId}\n{url}";

    /// <summary>The subscription's user, who shares <see cref="DeliveryOptions.MaxInFlightPerUser"/> across all of their lanes; null while the settings are unknown.</summary>
    public string? User { get; private set; }

    /// <summary>Takes the subscription's settings (when the lane is made, and at every claim, so a changed URL or limit applies).</summary>
    public void Learn(string userId, string url, int? rateLimitPerSecond)
    {
        User = userId;
        Destination = DestinationKey(userId, url);
        RateLimitPerSecond = rateLimitPerSecond;
        SettingsKnown = true;
    }

    /// <summary>The circuit breaker's state.</summary>
    public CircuitState Circuit { get; private set; }

    /// <summary>When an open circuit lets a probe through.</summary>
    public DateTimeOffset OpenUntil { get; private set; }

    /// <summary>Timeouts in a row, reset by any answer.</summary>
    public int ConsecutiveTimeouts { get; private set; }

    /// <summary>When anything last happened here (for dropping idle lanes).</summary>
    public DateTimeOffset LastActivity { get; private set; }

    /// <summary>The waiting deliveries, oldest first.</summary>
    public IEnumerable<Waiting> WaitingDeliveries => _queue;

    /// <summary>
    /// Dispatchers draining this subscription's backlog, this one included, as the last heartbeat
    /// counted (0: not counted yet). A backlogged lane's rate is shared among these only, so a
    /// backlog drains at the subscription's rate however many replicas run.
    /// </summary>
    public int Sharers { get; set; }

    /// <summary>Replicas sharing this lane's rate: those draining its backlog when it has one (and they were counted), else all <paramref name="replicas"/>.</summary>
    public int RateSharers(int replicas) => Backlogged && Sharers > 0 ? Sharers : replicas;

    /// <summary>
    /// Whether some of this subscription's due deliveries wait in its backlog in the database
    /// because the lane was full. New deliveries then join the backlog too, so they keep their order.
    /// </summary>
    public bool Backlogged { get; set; }

    /// <summary>
    /// Adds a delivery unless it is already waiting or in flight here. Returns false when it was
    /// not added because the lane already holds <paramref name="maxQueued"/> or has a backlog
    /// (unless <paramref name="fromBacklog"/>); true otherwise.
    /// </summary>
    public bool TryEnqueue(Guid deliveryId, DateTimeOffset heldUntil, int maxQueued, DateTimeOffset now, bool fromBacklog = false)
    {
        LastActivity = now;
        if (_known.Contains(deliveryId)) return true;
        if (!fromBacklog && (Backlogged || _queue.Count >= maxQueued)) return false;
        _known.Add(deliveryId);
        _queue.Enqueue(new Waiting(deliveryId, heldUntil));
        return true;
    }

    /// <summary>
    /// How many attempts may start now: the cap minus what is in flight, limited by the rate
    /// window and the circuit, and by what is waiting. One while the settings are unknown.
    /// </summary>
    /// <param name="now">The time.</param>
    /// <param name="cap">Attempts in flight allowed to this subscription in this process.</param>
    /// <param name="replicas">Replicas sharing the subscription's rate limit (1 or more).</param>
    public int Startable(DateTimeOffset now, int cap, int replicas) => _queue.Count == 0 ? 0 : Math.Min(_queue.Count, Room(now, cap, replicas));

    /// <summary>
    /// How many attempts could start now, whatever waits: the cap minus what is in flight,
    /// limited by the rate window and the circuit (a half-open circuit moves on from open here).
    /// One while the settings are unknown and nothing is in flight.
    /// </summary>
    /// <inheritdoc cref="Startable" path="/param"/>
    public int Room(DateTimeOffset now, int cap, int replicas)
    {
        var n = cap - InFlight;
        switch (Circuit)
        {
            case CircuitState.Open when now < OpenUntil:
                return 0;
            case CircuitState.Open:
                Circuit = CircuitState.HalfOpen;
                _probeInFlight = false;
                goto case CircuitState.HalfOpen;
            case CircuitState.HalfOpen:
                n = _probeInFlight ? 0 : Math.Min(n, 1);
                break;
        }
        if (!SettingsKnown) n = Math.Min(n, InFlight == 0 ? 1 : 0);
        if (RateLimitPerSecond is { } rate && n > 0)
        {
            var (permits, window) = RateWindow(rate, replicas);
            while (_starts.Count > 0 && _starts.Peek() <= now - window) _starts.Dequeue();
            n = Math.Min(n, permits - _starts.Count);
        }
        return Math.Max(0, n);
    }

    /// <summary>
    /// The per-replica share of a rate limit as "at most <c>Permits</c> starts in any
    /// <c>Window</c>": <paramref name="rate"/> per second split over <paramref name="replicas"/>,
    /// rounded down, never more than the rate overall; below one per second per replica the window grows.
    /// </summary>
    public static (int Permits, TimeSpan Window) RateWindow(int rate, int replicas)
    {
        var window = TimeSpan.FromSeconds(Math.Max(1.0, (double)replicas / rate));
        var permits = Math.Max(1, (int)Math.Floor(rate * window.TotalSeconds / replicas));
        return (permits, window);
    }

    /// <summary>Takes up to <paramref name="count"/> waiting deliveries to claim, oldest first.</summary>
    public List<Waiting> Take(int count)
    {
        var taken = new List<Waiting>(Math.Min(count, _queue.Count));
        while (taken.Count < count && _queue.TryDequeue(out var w)) taken.Add(w);
        return taken;
    }

    /// <summary>Puts back deliveries that could not be claimed for a reason of ours (the database failed), at the front.</summary>
    public void PutBack(IReadOnlyCollection<Waiting> waiting)
    {
        if (waiting.Count == 0) return;
        var rest = _queue.ToList();
        _queue.Clear();
        foreach (var w in waiting.Concat(rest)) _queue.Enqueue(w);
    }

    /// <summary>A taken delivery was claimed and its attempt starts now; learns the subscription's current settings.</summary>
    public void Started(DateTimeOffset now, int? rateLimitPerSecond)
    {
        RateLimitPerSecond = rateLimitPerSecond;
        SettingsKnown = true;
        InFlight++;
        LastActivity = now;
        if (RateLimitPerSecond is not null) _starts.Enqueue(now);
        if (Circuit == CircuitState.HalfOpen) _probeInFlight = true;
    }

    /// <summary>A delivery claimed at insert (<see cref="InsertClaims"/>) starts now, without having waited here.</summary>
    public void StartedClaimed(Guid deliveryId, DateTimeOffset now, int? rateLimitPerSecond)
    {
        _known.Add(deliveryId);
        Started(now, rateLimitPerSecond);
    }

    /// <summary>A taken delivery was not claimed (final, not due, or another replica has it): forget it.</summary>
    public void NotClaimed(Guid deliveryId) => _known.Remove(deliveryId);

    /// <summary>
    /// An attempt finished. Timeouts count toward opening the circuit (<paramref name="timeoutsToOpen"/>
    /// in a row, or a failed probe); any answer or other outcome closes it and resets the count.
    /// </summary>
    public void Finished(Guid deliveryId, bool timedOut, DateTimeOffset now, int timeoutsToOpen, TimeSpan breakFor)
    {
        _known.Remove(deliveryId);
        InFlight--;
        LastActivity = now;
        if (!timedOut)
        {
            ConsecutiveTimeouts = 0;
            Circuit = CircuitState.Closed;
            _probeInFlight = false;
            return;
        }
        ConsecutiveTimeouts++;
        if (Circuit == CircuitState.HalfOpen || (Circuit == CircuitState.Closed && ConsecutiveTimeouts >= timeoutsToOpen))
        {
            Circuit = CircuitState.Open;
            OpenUntil = now + breakFor;
            _probeInFlight = false;
        }
    }

    /// <summary>When this lane may start something without any other event: the end of a break or of a rate window.</summary>
    public DateTimeOffset? NextWake(DateTimeOffset now, int replicas)
    {
        if (_queue.Count == 0) return null;
        if (Circuit == CircuitState.Open) return OpenUntil;
        if (RateLimitPerSecond is { } rate && _starts.Count > 0)
        {
            var (permits, window) = RateWindow(rate, replicas);
            if (_starts.Count >= permits) return _starts.Peek() + window;
        }
        return null;
    }

    /// <summary>Whether nothing waits (here or in a backlog), nothing is in flight and the circuit is closed.</summary>
    public bool IsIdle => _queue.Count == 0 && InFlight == 0 && Circuit == CircuitState.Closed && !Backlogged;
}
