using System.Security.Claims;
using MassTransit;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Subscriptions;

/// <content>The delivery history of a subscription and the manual retry of one delivery.</content>
public static partial class SubscriptionsApi
{
    private static async Task<Results<Ok<PageResponse<DeliveryResponse>>, ValidationProblem, ProblemHttpResult>> ListDeliveries(
        Guid id, [AsParameters] ApiServices services, [FromQuery(Name = "status")] string? statusText,
        [FromQuery(Name = "include_attempts")] string? includeAttemptsText, [AsParameters] PageQuery page, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var status = q.OneOf("status", statusText, DeliveryStatus.All, $"Must be one of {string.Join(", ", DeliveryStatus.All)}.");
        var includeAttempts = q.Boolean("include_attempts", includeAttemptsText) ?? false;
        var (limit, offset, cursor) = Paging(q, page, PageCursor.Lists.Deliveries, id);
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        if (!await services.Owned().AnyAsync(s => s.Id == id, cancellationToken)) return NotFound(id);

        var query = services.Db.Deliveries.AsNoTracking().Where(d => d.SubscriptionId == id);
        if (status is not null) query = query.Where(d => d.Status == status);
        var total = await query.CountAsync(cancellationToken);
        if (cursor is not null)
            query = query.Where(d => EF.Functions.LessThan(ValueTuple.Create(d.CreatedAt, d.Id), ValueTuple.Create(cursor.CreatedAt, cursor.Id)));
        query = query.OrderByDescending(d => d.CreatedAt).ThenByDescending(d => d.Id).Skip(offset).Take(limit + 1);
        if (includeAttempts) query = query.Include(d => d.Attempts);
        var rows = await query.ToListAsync(cancellationToken);
        return TypedResults.Ok(Page(rows, limit, cursor is null ? offset : null, d => DeliveryResponse.From(d, includeAttempts),
            d => new PageCursor(PageCursor.Lists.Deliveries, id, d.CreatedAt, d.Id), total));
    }

    /// <remarks>
    /// The database row is the queue: once <see cref="RecoveryStore.RestartAsync"/> committed, the
    /// delivery is pending and due now, and the reconciler publishes any such delivery that stays
    /// unclaimed past its grace. So the publish here only makes the attempt start at once; it is
    /// bounded by <see cref="SubscriptionOptions.RetryPublishTimeoutSeconds"/>, and when the broker
    /// is down or slow the answer is 202 all the same, the attempt starting up to the reconciler's
    /// grace after the broker is back.
    /// </remarks>
    private static async Task<Results<Accepted<DeliveryResponse>, ProblemHttpResult>> RetryDelivery(
        Guid id, Guid deliveryId, ClaimsPrincipal user, WebhookDbContext db, RecoveryStore store, NpgsqlDataSource database,
        IPublishEndpoint publish, IOptions<SubscriptionOptions> options, ILoggerFactory logs,
        CancellationToken cancellationToken)
    {
        var subscription = await Owned(db, user).FirstOrDefaultAsync(s => s.Id == id, cancellationToken);
        if (subscription is null) return NotFound(id);
        if (!subscription.IsActive)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Subscription is disabled",
                detail: "Enable the subscription (PATCH is_active: true) before retrying its deliveries.");
        // One transaction that rolls back on failure, so it may run again after a broken connection.
        var previous = await DatabaseAvailability.RetryOnceAsync(database,
            ct => store.RestartAsync(deliveryId, id, subscription.RetryCount, ct), cancellationToken);
        if (previous is null)
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Delivery not found",
                detail: $"No delivery {deliveryId} for webhook {id}.");
        if (previous is DeliveryStatus.Pending or DeliveryStatus.Retrying)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Delivery already pending",
                detail: $"This delivery is {previous}: its attempts are under way or waiting (an earlier retry of it was accepted, " +
                        "or its first round is not over), and it will be attempted without another request.");
        if (previous is not (DeliveryStatus.Failed or DeliveryStatus.Cancelled))
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Delivery cannot be retried",
                detail: $"Only failed or cancelled deliveries can be retried; this one is {previous}.");
        var delivery = await db.Deliveries.AsNoTracking().FirstAsync(d => d.Id == deliveryId, cancellationToken);
        using var publishing = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        publishing.CancelAfter(TimeSpan.FromSeconds(options.Value.RetryPublishTimeoutSeconds));
        try
        {
            await publish.Publish(new DeliverWebhook(delivery.Id, id), publishing.Token);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            logs.CreateLogger(typeof(SubscriptionsApi)).LogWarning(
                "Retry of delivery {DeliveryId} accepted, but its message was not published within {Seconds} s ({Error}); " +
                "the reconciler will publish it once the broker takes messages", delivery.Id, options.Value.RetryPublishTimeoutSeconds, ex.Message);
        }
        return TypedResults.Accepted($"/api/webhooks/{id}/deliveries", DeliveryResponse.From(delivery, false));
    }
}
