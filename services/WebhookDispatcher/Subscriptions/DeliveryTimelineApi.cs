using System.ComponentModel;
using System.Data;
using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// <c>GET /api/webhooks/stats/timeline</c>: the caller's deliveries over a window in
/// <see cref="Buckets"/> equal slices, each with its successes, failures, success rate and
/// average delivery time (what the portal's statistics chart draws). Same rules as
/// <see cref="DeliveryStatsApi"/>: own, not deleted subscriptions; deliveries created in the
/// window, by their status now; one statement through the index on (subscription_id, created_at).
/// </summary>
public static class DeliveryTimelineApi
{
    /// <summary>Slices of a window.</summary>
    public const int Buckets = 24;

    /// <summary>Maps the endpoint on the management API's group.</summary>
    public static RouteHandlerBuilder MapDeliveryTimeline(this RouteGroupBuilder group) => group.MapGet("/stats/timeline", Get)
        .WithName("GetDeliveryTimeline")
        .WithSummary("The caller's successes, failures, success rate and delivery time over a window, in 24 equal slices");

    private static async Task<Results<Ok<DeliveryTimelineResponse>, ValidationProblem>> Get(ClaimsPrincipal user, NpgsqlDataSource database,
        TimeProvider time, CancellationToken cancellationToken, [FromQuery(Name = "window")] string? windowText = null)
    {
        var windowName = windowText ?? DeliveryStatsApi.DefaultWindow;
        if (DeliveryStatsApi.ParseWindow(windowName) is not { } window)
            return ApiInput.Invalid("window", DeliveryStatsApi.WindowHint);
        var until = time.GetUtcNow().ToDatabasePrecision();
        var since = until - window;
        var userId = user.UserId();

        var rows = await DatabaseAvailability.RetryOnceAsync(database, async ct =>
        {
            await using var command = database.CreateCommand($"""
                SELECT least(width_bucket(extract(epoch FROM d.created_at - $2), 0, $4, {Buckets}), {Buckets}) AS bucket,
                       count(*) FILTER (WHERE d.status = '{DeliveryStatus.Success}'),
                       count(*) FILTER (WHERE d.status = '{DeliveryStatus.Failed}'),
                       count(*) FILTER (WHERE d.status NOT IN ('{DeliveryStatus.Success}', '{DeliveryStatus.Failed}')),
                       avg(extract(epoch FROM d.completed_at - d.created_at) * 1000) FILTER (WHERE d.status = '{DeliveryStatus.Success}')::float8
                FROM webhook_deliveries d
                WHERE d.subscription_id IN (SELECT s.id FROM webhook_subscriptions s WHERE s.user_id = $1 AND s.deleted_at IS NULL)
                  AND d.created_at >= $2 AND d.created_at <= $3 AND d.batch_size IS NULL -- events, not batches (decision 0015)
                GROUP BY 1
                """);
            command.Parameters.Add(new() { Value = userId });
            command.Parameters.Add(new() { Value = since });
            command.Parameters.Add(new() { Value = until });
            command.Parameters.Add(new() { Value = window.TotalSeconds });
            var found = new Dictionary<int, (long Succeeded, long Failed, long Other, double? AverageMs)>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
                found[reader.GetInt32(0)] = (reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.IsDBNull(4) ? null : reader.GetDouble(4));
            return found;
        }, cancellationToken);

        var slice = window / Buckets;
        var buckets = Enumerable.Range(1, Buckets).Select(b =>
        {
            var (succeeded, failed, other, average) = rows.GetValueOrDefault(b);
            return new TimelineBucket(since + slice * (b - 1), succeeded, failed, other,
                succeeded + failed == 0 ? null : Math.Round((double)succeeded / (succeeded + failed), 4),
                average is { } ms ? Math.Round(ms, 1) : null);
        }).ToList();
        return TypedResults.Ok(new DeliveryTimelineResponse(windowName, since, until, (int)Math.Ceiling(slice.TotalSeconds), buckets));
    }
}

/// <summary>The answer of <c>GET /api/webhooks/stats/timeline</c>.</summary>
/// <param name="Window">The window asked for, e.g. <c>24h</c>.</param>
/// <param name="WindowStart">Start of the window (UTC).</param>
/// <param name="WindowEnd">End of the window (UTC): the time of the request.</param>
/// <param name="BucketSeconds">Length of each slice, in seconds (rounded up): the window over 24.</param>
/// <param name="Buckets">The 24 slices, oldest first.</param>
public sealed record DeliveryTimelineResponse(string Window, DateTimeOffset WindowStart, DateTimeOffset WindowEnd, int BucketSeconds,
    IReadOnlyList<TimelineBucket> Buckets);

/// <summary>One slice of a window: the deliveries created in it, by their status now.</summary>
/// <param name="Start">Start of the slice (UTC).</param>
/// <param name="Succeeded">Status <c>success</c>.</param>
/// <param name="Failed">Status <c>failed</c>.</param>
/// <param name="Other">Pending, retrying or cancelled.</param>
/// <param name="SuccessRate">Succeeded over succeeded and failed, 0–1; null when none finished.</param>
/// <param name="AverageDeliveryTimeMs">Mean time from creation to success of the slice's successful deliveries, in milliseconds; null when none.</param>
public sealed record TimelineBucket(
    DateTimeOffset Start, long Succeeded, long Failed, long Other, double? SuccessRate,
    [property: Description("Mean time from creation to success of the slice's successful deliveries, in milliseconds; null when none succeeded.")]
    double? AverageDeliveryTimeMs);
