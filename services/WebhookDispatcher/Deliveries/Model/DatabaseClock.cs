namespace WebhookDispatcher.Deliveries;

/// <summary>
/// How far the database's clock is ahead of this process's (negative: behind), learned from the
/// claims: each claim's time is the database's <c>now()</c>, read back beside the process's time
/// just before the statement was sent. The estimate is the smallest such difference seen over the
/// last one to two minutes (a statement's latency only ever adds to it), so it is stable between
/// statements and follows a drifting clock. The recorder moves the process's times onto the
/// database's clock with it, so every stored time agrees across replicas whose clocks do not.
/// </summary>
public sealed class DatabaseClock(TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    /// <summary>Changes of the estimate smaller than this are ignored.</summary>
    public static readonly TimeSpan Resolution = TimeSpan.FromMilliseconds(5);
    private readonly Lock _lock = new();
    private TimeSpan? _current;
    private TimeSpan? _previous;
    private DateTimeOffset _windowEnds;

    /// <summary>Database clock minus process clock; zero until a claim was observed.</summary>
    public TimeSpan Offset
    {
        get
        {
            lock (_lock)
            {
                if (_current is null) return _previous ?? TimeSpan.Zero;
                return _previous is { } p && p < _current.Value ? p : _current.Value;
            }
        }
    }

    /// <summary>Learns from one statement: the process's time just before it was sent, and the database's <c>now()</c> it ran at.</summary>
    public void Observe(DateTimeOffset processSentAt, DateTimeOffset databaseNow)
    {
        var sample = databaseNow - processSentAt;
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (now >= _windowEnds)
            {
                _previous = _current ?? _previous;
                _current = null;
                _windowEnds = now + Window;
            }
            // Improvements under a few milliseconds are noise of the statement's latency; ignoring
            // them keeps the times one process stores in step with each other.
            if (_current is null || sample < _current - Resolution) _current = sample;
        }
    }
}
