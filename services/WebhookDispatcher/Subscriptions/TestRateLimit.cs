using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The rate limit of <c>POST /api/webhooks/{id}/test</c>, which makes an outbound request on the
/// caller's behalf: a token bucket per user (the token's <c>sub</c>) holding
/// <see cref="SubscriptionOptions.TestRequestsPerMinute"/> sends, refilled one at a time over the
/// minute. Past it the API answers 429 with RFC 9457 problem details and a <c>Retry-After</c>
/// (RFC 9110 §10.2.3) in whole seconds, after which one more send is allowed.
/// </summary>
internal static class TestRateLimit
{
    /// <summary>Name of the rate limiter policy on the test endpoint.</summary>
    public const string Policy = "webhook-test";

    /// <summary>Registers the rate limiter and its policy (the middleware runs after authorization, so the user is known).</summary>
    public static void Add(IServiceCollection services) => services.AddRateLimiter(o =>
    {
        o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        o.AddPolicy(Policy, context =>
        {
            var perMinute = context.RequestServices.GetRequiredService<IOptions<SubscriptionOptions>>().Value.TestRequestsPerMinute;
            // Authorization has already refused requests without a sub; "" only keeps the type total.
            return RateLimitPartition.GetTokenBucketLimiter(context.User.FindFirstValue(JwtRegisteredClaimNames.Sub) ?? "", _ => Bucket(perMinute));
        });
        o.OnRejected = RejectAsync;
    });

    /// <summary>A bucket of <paramref name="perMinute"/> tokens, one added every 60/<paramref name="perMinute"/> s, nothing queued.</summary>
    internal static TokenBucketRateLimiterOptions Bucket(int perMinute) => new()
    {
        TokenLimit = perMinute,
        TokensPerPeriod = 1,
        ReplenishmentPeriod = TimeSpan.FromMinutes(1) / perMinute,
        QueueLimit = 0,
        AutoReplenishment = true,
    };

    private static async ValueTask RejectAsync(OnRejectedContext context, CancellationToken cancellationToken)
    {
        var http = context.HttpContext;
        var perMinute = http.RequestServices.GetRequiredService<IOptions<SubscriptionOptions>>().Value.TestRequestsPerMinute;
        var seconds = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter)
            ? Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds))
            : (int)Math.Ceiling(60.0 / perMinute);
        http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = http,
            ProblemDetails =
            {
                Status = StatusCodes.Status429TooManyRequests,
                Title = "Too many test sends",
                Detail = $"At most {perMinute} test sends a minute per user; the next one is allowed in {seconds} s.",
            },
        });
    }
}
