namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// Cancels an API request's token (<see cref="HttpContext.RequestAborted"/>: its deadline, or the
/// client going away) on a thread of its own rather than on the thread pool. Npgsql sends
/// PostgreSQL's cancel request from inside the token's callback, synchronously (npgsql/npgsql#3696):
/// against a database that hangs, that callback waits for the cancel connection's startup answer
/// (Npgsql <c>Timeout</c>). Run where the request timeout's timer fires, on the pool, requests cut
/// off at their deadline together each blocked a pool thread, and the process answered nothing
/// else, liveness probes included, until the pool had grown past them (docs/benchmarks/api.md,
/// "A frozen database").
/// </summary>
internal static class RequestCancellation
{
    /// <summary>
    /// Cancellations running on threads of their own at once, at most (64). Past it a cancellation
    /// runs where the token fired, as it would without this class.
    /// </summary>
    public const int MaxThreads = 64;

    private static int _running;

    /// <summary>
    /// Replaces <see cref="HttpContext.RequestAborted"/>, for everything after this middleware,
    /// with a token cancelled off the pool when the original one is. Goes after
    /// <c>UseRequestTimeouts</c>, whose deadline it carries.
    /// </summary>
    public static IApplicationBuilder UseRequestCancellationOffThePool(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var aborted = context.RequestAborted;
        if (!aborted.CanBeCanceled)
        {
            await next(context);
            return;
        }
        // Not disposed: a cancellation may still be running on its thread when the request ends,
        // and a source with no timer holds nothing the collector does not free.
        var offPool = new CancellationTokenSource();
        await using (Forward(aborted, offPool))
        {
            context.RequestAborted = offPool.Token;
            try
            {
                await next(context);
            }
            finally
            {
                context.RequestAborted = aborted;
            }
        }
    });

    /// <summary>
    /// Cancels <paramref name="offPool"/> on a thread of its own once <paramref name="token"/> is
    /// cancelled; for a deadline of a request's own (<see cref="DatabaseDeadline.WithinAsync{T}"/>),
    /// whose timer would otherwise run the cancellation on the pool. Dispose the registration when
    /// the work ends; leave <paramref name="offPool"/> undisposed (see above).
    /// </summary>
    public static CancellationTokenRegistration Forward(CancellationToken token, CancellationTokenSource offPool) =>
        token.UnsafeRegister(static source => CancelOffThePool((CancellationTokenSource)source!), offPool);

    private static void CancelOffThePool(CancellationTokenSource source)
    {
        if (Interlocked.Increment(ref _running) > MaxThreads)
        {
            Interlocked.Decrement(ref _running);
            Cancel(source);
            return;
        }
        new Thread(static state =>
        {
            try
            {
                Cancel((CancellationTokenSource)state!);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }) { IsBackground = true, Name = "request cancellation" }.Start(source);
    }

    private static void Cancel(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (AggregateException)
        {
            // A registration's callback failed: that is its owner's to handle, and the token is
            // cancelled all the same. Not thrown on, where it would end the process.
        }
    }
}
