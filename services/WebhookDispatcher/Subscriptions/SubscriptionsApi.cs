using System.Security.Claims;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Notely.Events;
using WebhookDispatcher.Data;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The management API under <c>/api/webhooks</c>: JWT-authenticated, owner-scoped (another user's
/// subscription answers 404 exactly like a missing one), snake_case JSON, RFC 9457 problem details.
/// </summary>
public static partial class SubscriptionsApi
{
    /// <summary>Largest page of <c>GET /api/webhooks</c> and of deliveries.</summary>
    public const int MaxLimit = 100;

    /// <summary>Default page size.</summary>
    public const int DefaultLimit = 50;

    /// <summary>Registers the API's options and OpenAPI document.</summary>
    public static IHostApplicationBuilder AddSubscriptionsApi(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<SubscriptionOptions>().BindConfiguration(SubscriptionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddScoped<OrderingRelease>();
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.NumberHandling = JsonNumberHandling.Strict;
        });
        // Binding failures become exceptions in every environment, so the handler below answers
        // them with problem details that say what was wrong (the default is a bare 400).
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddExceptionHandler<BadRequestExceptionHandler>();
        // While PostgreSQL is down or restarting: 503 with Retry-After, never 500.
        builder.Services.AddExceptionHandler<DatabaseUnavailableHandler>();
        // While it hangs (refusing nothing): 503 with Retry-After past a deadline, not after the driver's timeouts.
        DatabaseDeadline.Add(builder.Services);
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi(OpenApiDocumentation.Configure);
        TestRateLimit.Add(builder.Services);
        return builder;
    }

    /// <summary>Maps the endpoints of the management API.</summary>
    public static IEndpointRouteBuilder MapSubscriptionsApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/webhooks").RequireAuthorization().WithTags("Webhooks")
            .ProducesProblem(StatusCodes.Status401Unauthorized);
        group.MapGet("/event-types", ListEventTypes).WithName("ListEventTypes")
            .WithSummary("List the event types, each with its payload's JSON Schema and an example payload");
        group.MapGet("/event-types/{name}", GetEventType).WithName("GetEventType")
            .WithSummary("One event type with its payload's JSON Schema and an example payload")
            .ProducesProblem(StatusCodes.Status404NotFound);
        // Everything below reads or writes the database: 503 with Retry-After while it is away (DatabaseUnavailableHandler).
        var stored = group.MapGroup("").ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        stored.WithRequestTimeout(DatabaseDeadline.Policy); // and 503 past a deadline while it hangs (DatabaseDeadline)
        Changes(WithJsonBody(stored.MapPost("", Create).Accepts<CreateSubscriptionRequest>("application/json"))).WithName("CreateWebhook")
            .WithSummary("Create a subscription; the answer carries its secret, this once")
            .ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        stored.MapDeliveryStats();
        stored.MapDeliveryTimeline();
        stored.MapGet("", List).WithName("ListWebhooks")
            .WithSummary("The caller's subscriptions, newest first, by cursor or offset");
        var one = stored.MapGroup("/{id:guid}").ProducesProblem(StatusCodes.Status404NotFound);
        one.MapGet("", Get).WithName("GetWebhook").WithSummary("One subscription with its delivery statistics");
        Changes(WithJsonBody(one.MapPatch("", Update).Accepts<UpdateSubscriptionRequest>("application/json"))).WithName("UpdateWebhook")
            .WithSummary("Change some fields of a subscription")
            .ProducesProblem(StatusCodes.Status429TooManyRequests); // a template's check got no turn to render (TemplateRenderGate)
        Changes(one.MapDelete("", Delete)).WithName("DeleteWebhook")
            .WithSummary("Delete a subscription; its waiting deliveries are cancelled");
        Changes(one.MapPost("/test", Test)).WithName("TestWebhook")
            .WithSummary("Send a signed webhook.test event now (no delivery record, no retries)")
            .RequireRateLimiting(TestRateLimit.Policy).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .WithRequestTimeout(DatabaseDeadline.TestPolicy);
        MapShaping(one);
        one.MapGet("/deliveries", ListDeliveries).WithName("ListDeliveries")
            .WithSummary("The subscription's deliveries, newest first, by cursor or offset")
            .WithDescription("Payloads are left out (each up to Delivery:MaxEventBytes); GET /api/webhooks/{id}/deliveries/{deliveryId} has one delivery's.");
        one.MapGet("/deliveries/{deliveryId:guid}", GetDelivery).WithName("GetDelivery")
            .WithSummary("One delivery with its attempts and its payload (the exact body sent on every attempt, or with a template the payload it is rendered from)");
        Changes(one.MapPost("/rotate-secret", RotateSecret)).ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesValidationProblem().ProducesProblem(StatusCodes.Status422UnprocessableEntity).WithName("RotateWebhookSecret")
            .WithSummary("Issue a new secret; the previous one keeps signing webhook-signature for the grace period");
        Changes(WithJsonBody(one.MapPost("/recover", Recover).Accepts<RecoverRequest>("application/json"))).WithName("RecoverDeliveries")
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Give every failed delivery created since a time a new round of attempts (at most 1000 a call)");
        Changes(one.MapPost("/deliveries/{deliveryId:guid}/retry", RetryDelivery)).ProducesProblem(StatusCodes.Status409Conflict).WithName("RetryDelivery")
            .WithSummary("Give a failed or cancelled delivery a new round of attempts")
            .WithDescription("202 once the new round is stored: the attempt starts at once, or, when the message broker is down, " +
                             "within the reconciler's grace after it is back. 409 when the delivery is already pending or retrying " +
                             "(e.g. a retry of it was accepted before) or succeeded.");
        return app;
    }

    /// <summary>A route that changes something: a read-only portal session gets 403 (Portal/PortalAuthentication.cs).</summary>
    private static RouteHandlerBuilder Changes(RouteHandlerBuilder route) => route.ProducesProblem(StatusCodes.Status403Forbidden);

    /// <summary>A JSON body: 415 for another media type, 413 above <see cref="ApiInput.MaxBodyBytes"/>.</summary>
    internal static RouteHandlerBuilder WithJsonBody(RouteHandlerBuilder route) => route
        .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
        .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
        .WithMetadata(new RequestSizeLimitAttribute(ApiInput.MaxWireBodyBytes));

    private static Ok<EventTypesResponse> ListEventTypes() => TypedResults.Ok(new EventTypesResponse(EventTypeResponse.Catalog)
        { Filters = FilterSyntaxResponse.Instance, Templates = BuiltInTemplateResponse.All });

    private static Results<Ok<EventTypeResponse>, ProblemHttpResult> GetEventType(string name) =>
        EventTypeResponse.Find(name) is { } eventType
            ? TypedResults.Ok(eventType)
            : TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Event type not found",
                detail: $"No event type {name}; GET /api/webhooks/event-types lists them.");

    private static async Task<Results<Ok<PageResponse<SubscriptionResponse>>, ValidationProblem>> List(
        [AsParameters] ApiServices services, [FromQuery(Name = "is_active")] string? isActiveText, [FromQuery(Name = "event_type")] string? eventTypeText,
        [AsParameters] PageQuery page, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var isActive = q.Boolean("is_active", isActiveText);
        var eventType = q.OneOf("event_type", eventTypeText, EventCatalog.All.Select(t => t.Name), "Must be a known event type.");
        var (limit, offset, cursor) = Paging(q, page, PageCursor.Lists.Subscriptions, Guid.Empty);
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);

        var query = services.Owned();
        if (isActive is { } active) query = query.Where(s => s.IsActive == active);
        if (eventType is not null) query = query.Where(s => s.EventTypes.Contains(eventType));
        var total = await query.CountAsync(cancellationToken);
        if (cursor is not null)
            query = query.Where(s => EF.Functions.LessThan(ValueTuple.Create(s.CreatedAt, s.Id), ValueTuple.Create(cursor.CreatedAt, cursor.Id)));
        // One row more than asked tells whether another page follows.
        var rows = await query.OrderByDescending(s => s.CreatedAt).ThenByDescending(s => s.Id).Skip(offset).Take(limit + 1).ToListAsync(cancellationToken);
        return TypedResults.Ok(Page(rows, limit, cursor is null ? offset : null, s => SubscriptionResponse.From(s, services.Sealer),
            s => new PageCursor(PageCursor.Lists.Subscriptions, Guid.Empty, s.CreatedAt, s.Id), total));
    }

    private static async Task<Results<Ok<SubscriptionResponse>, ProblemHttpResult>> Get(
        Guid id, [AsParameters] ApiServices services, CancellationToken cancellationToken) =>
        await services.Owned().FirstOrDefaultAsync(s => s.Id == id, cancellationToken) is { } s
            ? TypedResults.Ok(SubscriptionResponse.From(s, services.Sealer))
            : NotFound(id);

    /// <summary>The caller's subscriptions, read-only (writes load through <c>db.Subscriptions</c>).</summary>
    private static IQueryable<WebhookSubscription> Owned(WebhookDbContext db, ClaimsPrincipal user)
    {
        var userId = user.UserId();
        return db.Subscriptions.AsNoTracking().Where(s => s.UserId == userId);
    }

    private static ProblemHttpResult NotFound(Guid id) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Webhook not found", detail: $"No webhook {id}.");

    /// <summary>limit, and either offset or a cursor (both at once is an error: they name different positions).</summary>
    private static (int Limit, int Offset, PageCursor? Cursor) Paging(ApiInput.Query query, PageQuery page, PageCursor.Lists list, Guid scope)
    {
        var size = query.Integer("limit", page.Limit, DefaultLimit, 1, MaxLimit);
        var skip = query.Integer("offset", page.Offset, 0, 0, int.MaxValue);
        if (page.Cursor is null) return (size, skip, null);
        if (page.Offset is not null) query.Errors["cursor"] = ["Page by cursor or by offset, not both."];
        var cursor = PageCursor.Decode(page.Cursor, list, scope);
        if (cursor is null) query.Errors["cursor"] = ["Not a cursor this list issued; pass next_cursor from the previous page unchanged."];
        return (size, 0, cursor);
    }

    private static PageResponse<TResponse> Page<TRow, TResponse>(List<TRow> rows, int limit, int? offset, Func<TRow, TResponse> map,
        Func<TRow, PageCursor> cursorAfter, int? total)
    {
        var hasMore = rows.Count > limit;
        var page = hasMore ? rows[..limit] : rows;
        return new PageResponse<TResponse>(page.Select(map).ToList(), total, limit, offset, hasMore,
            hasMore ? cursorAfter(page[^1]).Encode() : null);
    }
}
