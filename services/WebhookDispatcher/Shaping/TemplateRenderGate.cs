using System.Threading.RateLimiting;

namespace WebhookDispatcher.Shaping;

/// <summary>
/// Takes turns for template renderings, so that one tenant's costly templates cannot take the
/// process's cores from the others (issue 14: one tenant cannot slow down another): a user's
/// renderings run one at a time, in arrival order, and at most <see cref="Environment.ProcessorCount"/>
/// run at once in the process, whoever they are for. A rendering's own time limit
/// (<see cref="TemplateRenderer.MaxRenderTime"/>) counts from its start, not while it waits its
/// turn. A rendering that has waited <see cref="MaxWait"/> does not run: a user whose templates
/// queue up that long finds their attempts retried later, not run late past their lease.
/// Deliveries' attempts and the API's preview and test take turns here alike.
/// </summary>
public sealed class TemplateRenderGate : IDisposable
{
    /// <summary>The longest a rendering waits for its turn: 10 s, well within an attempt's lease margin (<see cref="Deliveries.LaneStore.LeaseMarginSeconds"/>).</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(10);

    /// <summary>The error of a rendering that did not get its turn within <see cref="MaxWait"/> (a transient one).</summary>
    public static readonly string WaitedTooLong =
        $"The template did not get a turn to render within {MaxWait.TotalSeconds:0} s: this user's templates already queued that much rendering. Nothing was sent.";

    private readonly SemaphoreSlim _all;
    private readonly PartitionedRateLimiter<string> _perUser = PartitionedRateLimiter.Create<string, string>(user =>
        RateLimitPartition.GetConcurrencyLimiter(user, _ => new ConcurrencyLimiterOptions
        {
            PermitLimit = 1,
            QueueLimit = int.MaxValue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        }));

    /// <summary>A gate with one turn at a time per core.</summary>
    public TemplateRenderGate() : this(Environment.ProcessorCount) { }

    /// <summary>A gate with <paramref name="concurrent"/> turns at once in all (1 or more).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="concurrent"/> is under 1.</exception>
    public TemplateRenderGate(int concurrent)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrent, 1);
        _all = new SemaphoreSlim(concurrent, concurrent);
    }

    /// <summary>
    /// Runs <paramref name="render"/> (synchronously, on the thread that got the turn) once
    /// <paramref name="userId"/>'s earlier renderings are done and a turn is free. Returns its
    /// result, or a transient error (<see cref="WaitedTooLong"/>) when no turn came within <see cref="MaxWait"/>.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public async Task<RenderedBody> RunAsync(string userId, Func<RenderedBody> render, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(MaxWait);
        try
        {
            using var mine = await _perUser.AcquireAsync(userId, 1, wait.Token);
            if (!mine.IsAcquired) return new RenderedBody([], WebhookTemplate.DefaultContentType, WaitedTooLong, Transient: true);
            await _all.WaitAsync(wait.Token);
            try
            {
                return render();
            }
            finally
            {
                _all.Release();
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new RenderedBody([], WebhookTemplate.DefaultContentType, WaitedTooLong, Transient: true);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _perUser.Dispose();
        _all.Dispose();
    }
}
