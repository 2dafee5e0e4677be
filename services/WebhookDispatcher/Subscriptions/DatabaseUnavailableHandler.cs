using System.Globalization;
using Microsoft.AspNetCore.Diagnostics;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// Answers a request that failed because PostgreSQL is unreachable or not serving
/// (<see cref="DatabaseAvailability.IsUnavailable"/>) with 503 Service Unavailable, RFC 9457
/// problem details and <c>Retry-After</c> (RFC 9110 §10.2.3), instead of 500: the request was
/// fine, and the same request will work once the database is back. A broken pooled connection
/// after a restart never gets here: it is retried first (<see cref="DataExtensions"/>,
/// <see cref="DatabaseAvailability.RetryOnceAsync{T}"/>). A database whose schema is older than
/// this version (<see cref="DatabaseAvailability.IsSchemaBehind"/>: an API-only replica started
/// before the release's <c>migrate</c>) is answered the same way, titled "Database schema out of date".
/// </summary>
internal sealed class DatabaseUnavailableHandler(IProblemDetailsService problems, ILogger<DatabaseUnavailableHandler> logger) : IExceptionHandler
{
    /// <summary>Seconds a client is asked to wait before trying again: 5.</summary>
    public const int RetryAfterSeconds = 5;

    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (DatabaseAvailability.IsSchemaBehind(exception))
        {
            // An API-only replica on a database its migration has not reached yet (docs/operations.md, "Release steps").
            logger.LogWarning("{Method} {Path} answered 503: the database schema is older than this version ({Error}); run `WebhookDispatcher migrate`",
                httpContext.Request.Method, httpContext.Request.Path, exception.GetBaseException().Message);
            return await TryWriteAsync(httpContext, problems,
                "The database's schema is older than this version of the service needs (a migration is still to be applied). " +
                $"Try again in {RetryAfterSeconds} seconds.", exception, "Database schema out of date");
        }
        if (!DatabaseAvailability.IsUnavailable(exception)) return false;
        // One line, no stack trace: during an outage every request lands here.
        logger.LogWarning("{Method} {Path} answered 503: the database is unavailable ({Error})",
            httpContext.Request.Method, httpContext.Request.Path, exception.GetBaseException().Message);
        return await TryWriteAsync(httpContext, problems,
            $"The service cannot reach its database right now. Try again in {RetryAfterSeconds} seconds.", exception);
    }

    /// <summary>
    /// The answer for a database that is away or does not answer in time (also <see cref="DatabaseDeadline"/>'s):
    /// 503, <c>Retry-After</c> (<see cref="RetryAfterSeconds"/>) and problem details titled <paramref name="title"/>
    /// ("Database unavailable" unless given).
    /// </summary>
    /// <returns>Whether the problem details were written.</returns>
    internal static ValueTask<bool> TryWriteAsync(HttpContext httpContext, IProblemDetailsService problems, string detail, Exception? exception = null,
        string title = "Database unavailable")
    {
        httpContext.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        httpContext.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails =
            {
                Status = StatusCodes.Status503ServiceUnavailable,
                Title = title,
                Detail = detail,
            },
        });
    }
}
