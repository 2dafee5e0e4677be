namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// A receiver's way to hold requests until the test lets them go, counting those held now and the
/// most held at once: what a concurrency limit test asserts on.
/// </summary>
public sealed class HeldRequests
{
    private readonly SemaphoreSlim _gate = new(0);
    private int _now;
    private int _most;

    /// <summary>Requests held now.</summary>
    public int Now => Volatile.Read(ref _now);

    /// <summary>The most requests held at once so far.</summary>
    public int Most => Volatile.Read(ref _most);

    /// <summary>Holds the calling request until <see cref="ReleaseAll"/> or until <paramref name="aborted"/>.</summary>
    public async Task HoldAsync(CancellationToken aborted)
    {
        var now = Interlocked.Increment(ref _now);
        int seen;
        while ((seen = Volatile.Read(ref _most)) < now && Interlocked.CompareExchange(ref _most, now, seen) != seen) { }
        try
        {
            await _gate.WaitAsync(aborted);
        }
        finally
        {
            Interlocked.Decrement(ref _now);
        }
    }

    /// <summary>Lets every held request (and every later one) go.</summary>
    public void ReleaseAll() => _gate.Release(100_000);
}
