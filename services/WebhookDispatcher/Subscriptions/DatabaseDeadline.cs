using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The deadline of an API request that uses the database (<see cref="DatabaseOptions.ApiRequestTimeoutSeconds"/>,
/// 10 s by default). A database that hangs (its host froze, or a network drops its packets) refuses
/// nothing: a statement would wait for the driver's command timeout (30 s), twice with the retry of
/// <see cref="DataExtensions"/>. Past the deadline the request is cancelled (ASP.NET Core request
/// timeouts: the handler's <see cref="CancellationToken"/>, which every statement takes) and answered
/// much as an unreachable database is (<see cref="DatabaseUnavailableHandler"/>): 503, problem details
/// titled "No answer in time", <c>Retry-After</c>. A change the request asked for may or may not
/// have been made, as with any answer that did not come in time.
/// </summary>
internal static class DatabaseDeadline
{
    /// <summary>The request timeout policy of endpoints that use the database.</summary>
    public const string Policy = "database";

    /// <summary>
    /// The policy of <c>POST …/test</c>, which also waits for the subscriber: the deadline plus the
    /// longest subscription timeout (<see cref="WebhookSubscription.MaxTimeoutSeconds"/>). Its database
    /// read has the plain deadline (<see cref="WithinAsync{T}"/>).
    /// </summary>
    public const string TestPolicy = "database-and-subscriber";

    /// <summary>Registers both policies (with <c>UseRequestTimeouts</c> in the pipeline).</summary>
    public static void Add(IServiceCollection services)
    {
        services.AddRequestTimeouts();
        services.AddOptions<RequestTimeoutOptions>().Configure<IOptions<DatabaseOptions>>((o, database) =>
        {
            var deadline = TimeSpan.FromSeconds(database.Value.ApiRequestTimeoutSeconds);
            o.AddPolicy(Policy, Answer503(deadline));
            o.AddPolicy(TestPolicy, Answer503(deadline + TimeSpan.FromSeconds(WebhookSubscription.MaxTimeoutSeconds)));
        });
    }

    private static RequestTimeoutPolicy Answer503(TimeSpan timeout) => new()
    {
        Timeout = timeout,
        TimeoutStatusCode = StatusCodes.Status503ServiceUnavailable,
        WriteTimeoutResponse = context => WriteAsync(context, timeout),
    };

    /// <summary>
    /// The answer past the deadline: 503 with <c>Retry-After</c> and problem details titled "No answer
    /// in time", as for an unreachable database. It does not say what was waited for: mostly the
    /// database, but a request may also wait for a turn to render a template or for the broker.
    /// </summary>
    private static async Task WriteAsync(HttpContext context, TimeSpan timeout)
    {
        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DatabaseDeadline)).LogWarning(
            "{Method} {Path} answered 503: no answer within {Seconds} s (the request's deadline, Database:ApiRequestTimeoutSeconds)",
            context.Request.Method, context.Request.Path, timeout.TotalSeconds);
        var seconds = (int)timeout.TotalSeconds;
        await DatabaseUnavailableHandler.TryWriteAsync(context, context.RequestServices.GetRequiredService<IProblemDetailsService>(),
            $"The request could not finish within {seconds} second{(seconds == 1 ? "" : "s")} (what it waited for, the database or " +
            $"another service, did not answer in time). Try again in {DatabaseUnavailableHandler.RetryAfterSeconds} seconds" +
            (HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method)
                ? "."
                : "; the change this request asked for may or may not have been made, and may still take effect."),
            title: "No answer in time");
    }

    /// <summary>
    /// Runs one database read of a request under <see cref="TestPolicy"/> with the plain deadline.
    /// </summary>
    /// <exception cref="DatabaseDeadlineException">The read did not finish within the deadline (answered 503 by <see cref="DatabaseUnavailableHandler"/>).</exception>
    /// <exception cref="OperationCanceledException">The request was aborted.</exception>
    public static async Task<T> WithinAsync<T>(DatabaseOptions options, Func<CancellationToken, Task<T>> read, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(options.ApiRequestTimeoutSeconds));
        var offPool = new CancellationTokenSource();
        await using var forward = RequestCancellation.Forward(deadline.Token, offPool);
        try
        {
            return await read(offPool.Token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new DatabaseDeadlineException(options.ApiRequestTimeoutSeconds, ex);
        }
    }
}

/// <summary>A request's database work did not finish within <see cref="DatabaseOptions.ApiRequestTimeoutSeconds"/>.</summary>
/// <param name="seconds">The deadline, in seconds.</param>
/// <param name="inner">The cancellation it caused.</param>
public sealed class DatabaseDeadlineException(int seconds, Exception inner)
    : TimeoutException($"The database did not answer within {seconds} s.", inner);
