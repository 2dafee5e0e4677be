using System.Security.Claims;
using MassTransit;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using Notely.Events;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Subscriptions;

/// <content>The delivery history of a subscription and the manual retry of one delivery.</content>
public static partial class SubscriptionsApi
{
    /// <summary>
    /// Most deliveries one page of a delivery list filtered by status or event type reads (5,000):
    /// when fewer than the limit match among them, the page ends there with <c>has_more</c> and a
    /// cursor after them, so a page costs the same whatever the filter matches.
    /// </summary>
    public const int MaxFilteredScan = 5000;

    /// <summary>Most deliveries one <c>POST …/recover</c> restarts; the answer says whether more are left.</summary>
    public const int MaxRecoverPerCall = 1000;

    /// <remarks>
    /// Keyset pages with no count: a page costs the same on the first page and the thousandth,
    /// however many deliveries the subscription has, and a filtered page reads at most
    /// <see cref="MaxFilteredScan"/> of them (docs/benchmarks/portal.md). <c>total</c> is null on
    /// this list.
    /// </remarks>
    private static async Task<Results<Ok<PageResponse<DeliveryResponse>>, ValidationProblem, ProblemHttpResult>> ListDeliveries(
        Guid id, [AsParameters] ApiServices services, [FromQuery(Name = "status")] string? statusText,
        [FromQuery(Name = "event_type")] string? eventTypeText, [FromQuery(Name = "since")] string? sinceText,
        [FromQuery(Name = "until")] string? untilText,
        [FromQuery(Name = "include_attempts")] string? includeAttemptsText, [AsParameters] PageQuery page, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var status = q.OneOf("status", statusText, DeliveryStatus.All, $"Must be one of {string.Join(", ", DeliveryStatus.All)}.");
        // A batch delivery's event type is "batch" (docs/webhooks.md, "Batched deliveries").
        var eventType = q.OneOf("event_type", eventTypeText, EventCatalog.All.Select(t => t.Name).Append(BatchBody.EventType),
            $"Must be a known event type or {BatchBody.EventType}.");
        var since = q.Timestamp("since", sinceText);
        var until = q.Timestamp("until", untilText);
        var includeAttempts = q.Boolean("include_attempts", includeAttemptsText) ?? false;
        var (limit, offset, cursor) = Paging(q, page, PageCursor.Lists.Deliveries, id);
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        if (!await services.Owned().AnyAsync(s => s.Id == id, cancellationToken)) return NotFound(id);

        var query = services.Db.Deliveries.AsNoTracking().Where(d => d.SubscriptionId == id);
        if (since is { } from) query = query.Where(d => d.CreatedAt >= from);
        if (until is { } to) query = query.Where(d => d.CreatedAt < to);
        if (cursor is not null)
            query = query.Where(d => EF.Functions.LessThan(ValueTuple.Create(d.CreatedAt, d.Id), ValueTuple.Create(cursor.CreatedAt, cursor.Id)));
        // A status or event type that few deliveries have would make a page read the whole history
        // looking for matches: such a page looks only among the next MaxFilteredScan deliveries (one
        // statement: the filter over an inner LIMIT, read lazily, so a common match stops early), and
        // when fewer than the limit match there it ends, shorter (even empty), with a cursor after them.
        var windowed = (status is not null || eventType is not null) && offset == 0;
        var unfiltered = query;
        if (windowed) query = query.OrderByDescending(d => d.CreatedAt).ThenByDescending(d => d.Id).Take(MaxFilteredScan);
        if (status is not null) query = query.Where(d => d.Status == status);
        if (eventType is not null) query = query.Where(d => d.EventType == eventType);
        query = query.OrderByDescending(d => d.CreatedAt).ThenByDescending(d => d.Id).Skip(offset).Take(limit + 1);
        if (includeAttempts) query = query.Include(d => d.Attempts);
        var rows = await query.ToListAsync(cancellationToken);
        var result = Page(rows, limit, cursor is null ? offset : null, d => DeliveryResponse.From(d, includeAttempts),
            d => new PageCursor(PageCursor.Lists.Deliveries, id, d.CreatedAt, d.Id), total: null);
        if (windowed && !result.HasMore && await unfiltered.OrderByDescending(d => d.CreatedAt).ThenByDescending(d => d.Id)
                .Skip(MaxFilteredScan - 1).Select(d => new { d.CreatedAt, d.Id }).FirstOrDefaultAsync(cancellationToken) is { } last)
            result = result with { HasMore = true, NextCursor = new PageCursor(PageCursor.Lists.Deliveries, id, last.CreatedAt, last.Id).Encode() };
        return TypedResults.Ok(result);
    }

    /// <summary>
    /// <c>GET /api/webhooks/{id}/deliveries/{deliveryId}</c>: one delivery of the caller's
    /// subscription with its attempts and its payload, wherever the payload is stored; 404 for
    /// another user's subscription or a delivery of another subscription, like a missing one.
    /// </summary>
    private static async Task<Results<Ok<DeliveryDetailResponse>, ProblemHttpResult>> GetDelivery(
        Guid id, Guid deliveryId, [AsParameters] ApiServices services, NpgsqlDataSource database, CancellationToken cancellationToken)
    {
        if (!await services.Owned().AnyAsync(s => s.Id == id, cancellationToken)) return NotFound(id);
        var delivery = await services.Db.Deliveries.AsNoTracking().Include(d => d.Attempts)
            .FirstOrDefaultAsync(d => d.Id == deliveryId && d.SubscriptionId == id, cancellationToken);
        if (delivery is null)
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Delivery not found",
                detail: $"No delivery {deliveryId} for webhook {id}.");
        var payload = await DeliveryPayloadReader.ReadAsync(database, delivery.Id, delivery.Payload, cancellationToken);
        var detail = DeliveryDetailResponse.From(delivery, payload);
        if (delivery.BatchSize is not null)
        {
            // The members, in the body's order (BatchBody: the events' created_at, then delivery id).
            var members = await services.Db.Deliveries.AsNoTracking().Where(d => d.BatchId == delivery.Id && d.SubscriptionId == id)
                .Select(d => new { d.Id, d.EventId, d.EventType }).ToListAsync(cancellationToken);
            var order = payload is null ? [] : BatchEventOrder(payload);
            detail = detail with
            {
                BatchEvents = [.. members.OrderBy(m => order.TryGetValue(m.EventId, out var i) ? i : int.MaxValue).ThenBy(m => m.Id)
                    .Select(m => new BatchEventResponse(m.Id, m.EventId, m.EventType))],
            };
        }
        return TypedResults.Ok(detail);
    }

    /// <summary>Each event id of a batch body with its position.</summary>
    private static Dictionary<Guid, int> BatchEventOrder(string body)
    {
        var order = new Dictionary<Guid, int>();
        try
        {
            using var doc = JsonDocument.Parse(body);
            foreach (var e in doc.RootElement.GetProperty("events").EnumerateArray())
                if (e.TryGetProperty("id", out var eid) && eid.TryGetGuid(out var g)) order.TryAdd(g, order.Count);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // Not a batch body (never expected): the members are listed by delivery id.
        }
        return order;
    }

    private static async Task<Results<Accepted<DeliveryResponse>, ProblemHttpResult>> RetryDelivery(
        Guid id, Guid deliveryId, ClaimsPrincipal user, [AsParameters] RetryServices services, CancellationToken cancellationToken)
    {
        var subscription = await Owned(services.Db, user).FirstOrDefaultAsync(s => s.Id == id, cancellationToken);
        if (subscription is null) return NotFound(id);
        return await RetryAsync(subscription, deliveryId, services, cancellationToken);
    }

    /// <summary>
    /// Gives a failed or cancelled delivery of <paramref name="subscription"/> a new round of
    /// attempts (202), or answers why not (404 unknown delivery, 409 disabled subscription or a
    /// delivery not failed/cancelled). Shared by the owner's API and the operator's.
    /// </summary>
    /// <remarks>
    /// The database row is the queue: once <see cref="RecoveryStore.RestartAsync"/> committed, the
    /// delivery is pending and due now, and the reconciler publishes any such delivery that stays
    /// unclaimed past its grace. So the publish here only makes the attempt start at once; it is
    /// bounded by <see cref="SubscriptionOptions.RetryPublishTimeoutSeconds"/>, and when the broker
    /// is down or slow the answer is 202 all the same, the attempt starting up to the reconciler's
    /// grace after the broker is back.
    /// </remarks>
    internal static async Task<Results<Accepted<DeliveryResponse>, ProblemHttpResult>> RetryAsync(
        WebhookSubscription subscription, Guid deliveryId, RetryServices services, CancellationToken cancellationToken)
    {
        var id = subscription.Id;
        if (!subscription.IsActive)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Subscription is disabled",
                detail: "Enable the subscription (PATCH is_active: true) before retrying its deliveries.");
        if (await services.Db.Deliveries.AsNoTracking().Where(d => d.Id == deliveryId && d.SubscriptionId == id && d.BatchId != null)
                .Select(d => d.BatchId).FirstOrDefaultAsync(cancellationToken) is { } batchId)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Delivery is in a batch",
                detail: $"This event was sent in batch {batchId}; retry that delivery (POST …/deliveries/{batchId}/retry) to send the batch again.",
                extensions: new Dictionary<string, object?> { ["batch_id"] = batchId });
        // One transaction that rolls back on failure, so it may run again after a broken connection.
        var previous = await DatabaseAvailability.RetryOnceAsync(services.Database,
            ct => services.Store.RestartAsync(deliveryId, id, subscription.RetryCount, ct), cancellationToken);
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
        var delivery = await services.Db.Deliveries.AsNoTracking().FirstAsync(d => d.Id == deliveryId, cancellationToken);
        await services.PublishAsync([new DeliverWebhook(delivery.Id, id)], cancellationToken);
        return TypedResults.Accepted($"/api/webhooks/{id}/deliveries", DeliveryResponse.From(delivery, false));
    }

    /// <summary>
    /// <c>POST /api/webhooks/{id}/recover</c>: every failed delivery of the subscription created
    /// at or after <c>since</c> gets a new round of attempts, oldest first, at most
    /// <see cref="MaxRecoverPerCall"/> a call (<c>has_more</c> says whether to call again).
    /// </summary>
    private static async Task<Results<Accepted<RecoverResponse>, ValidationProblem, ProblemHttpResult>> Recover(
        Guid id, HttpRequest request, ClaimsPrincipal user, [AsParameters] RetryServices services, CancellationToken cancellationToken)
    {
        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        var q = new ApiInput.Query();
        DateTimeOffset? since = null;
        if (body.RootElement.ValueKind != JsonValueKind.Object) q.Errors["body"] = ["The request body must be a JSON object."];
        else
        {
            foreach (var property in body.RootElement.EnumerateObject().Where(p => p.Name != "since").Take(20))
                q.Errors[property.Name] = ["Unknown field. Accepted fields: since."];
            if (!body.RootElement.TryGetProperty("since", out var s) || s.ValueKind != JsonValueKind.String)
                q.Errors["since"] = ["Required: a time with its offset, e.g. 2026-12-01T00:00:00Z."];
            else since = q.Timestamp("since", s.GetString());
        }
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        var subscription = await Owned(services.Db, user).FirstOrDefaultAsync(s => s.Id == id, cancellationToken);
        if (subscription is null) return NotFound(id);
        return await RecoverAsync(subscription, since!.Value, services, cancellationToken);
    }

    /// <summary>Restarts the failed deliveries of <paramref name="subscription"/> created at or after <paramref name="since"/> (shared with the operator API).</summary>
    internal static async Task<Results<Accepted<RecoverResponse>, ValidationProblem, ProblemHttpResult>> RecoverAsync(
        WebhookSubscription subscription, DateTimeOffset since, RetryServices services, CancellationToken cancellationToken)
    {
        var id = subscription.Id;
        if (!subscription.IsActive)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Subscription is disabled",
                detail: "Enable the subscription (PATCH is_active: true) before recovering its deliveries.");
        var failed = await services.Db.Deliveries.AsNoTracking()
            // Events of a batch come back with their batch, not one by one.
            .Where(d => d.SubscriptionId == id && d.Status == DeliveryStatus.Failed && d.CreatedAt >= since && d.BatchId == null)
            .OrderBy(d => d.CreatedAt).ThenBy(d => d.Id).Select(d => d.Id).Take(MaxRecoverPerCall + 1).ToListAsync(cancellationToken);
        var restarted = new List<DeliverWebhook>();
        foreach (var deliveryId in failed.Take(MaxRecoverPerCall))
        {
            var previous = await DatabaseAvailability.RetryOnceAsync(services.Database,
                ct => services.Store.RestartAsync(deliveryId, id, subscription.RetryCount, ct), cancellationToken);
            if (previous == DeliveryStatus.Failed) restarted.Add(new DeliverWebhook(deliveryId, id));
        }
        await services.PublishAsync(restarted, cancellationToken);
        return TypedResults.Accepted($"/api/webhooks/{id}/deliveries", new RecoverResponse(restarted.Count, failed.Count > MaxRecoverPerCall));
    }
}

/// <summary>The answer of <c>POST /api/webhooks/{id}/recover</c>.</summary>
/// <param name="Recovered">Failed deliveries given a new round of attempts by this call.</param>
/// <param name="HasMore">Whether more failed deliveries since the time are left (call again).</param>
public sealed record RecoverResponse(int Recovered, bool HasMore);

/// <summary>What a manual retry or recovery works with, bound per request by <c>[AsParameters]</c>.</summary>
/// <param name="Db">The request's database context.</param>
/// <param name="Store">Recovery's SQL (restarts a delivery).</param>
/// <param name="Database">The data source (for retrying a statement after a broken connection).</param>
/// <param name="Publish">Publishes the delivery messages.</param>
/// <param name="Options">The management API's settings.</param>
/// <param name="Logs">Logger factory.</param>
internal sealed record RetryServices(WebhookDbContext Db, RecoveryStore Store, NpgsqlDataSource Database, IPublishEndpoint Publish,
    IOptions<SubscriptionOptions> Options, ILoggerFactory Logs)
{
    /// <summary>
    /// Publishes <paramref name="messages"/>, waiting at most <see cref="SubscriptionOptions.RetryPublishTimeoutSeconds"/>;
    /// a publish that fails or times out is logged and left to the reconciler (the rows are due already).
    /// </summary>
    public async Task PublishAsync(IReadOnlyList<DeliverWebhook> messages, CancellationToken cancellationToken)
    {
        if (messages.Count == 0) return;
        using var publishing = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        publishing.CancelAfter(TimeSpan.FromSeconds(Options.Value.RetryPublishTimeoutSeconds));
        try
        {
            await Publish.PublishBatch(messages, publishing.Token);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            Logs.CreateLogger(typeof(SubscriptionsApi)).LogWarning(
                "Retry of {Count} delivery(ies) (first {DeliveryId}) accepted, but its message was not published within {Seconds} s ({Error}); " +
                "the reconciler will publish it once the broker takes messages", messages.Count, messages[0].DeliveryId,
                Options.Value.RetryPublishTimeoutSeconds, ex.Message);
        }
    }
}
