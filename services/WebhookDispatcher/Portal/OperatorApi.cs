using System.Security.Claims;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Portal;

/// <summary>A delivery as the operator view shows it: with whose subscription it belongs to.</summary>
/// <param name="Delivery">The delivery (without its attempts; the detail has them).</param>
/// <param name="UserId">The subscription's owner.</param>
/// <param name="Url">The subscription's URL.</param>
public sealed record OperatorDeliveryResponse(DeliveryResponse Delivery, string UserId, string Url);

/// <summary>One delivery as the operator view shows it: with its attempts, its payload and whose it is.</summary>
/// <param name="Delivery">The delivery, its attempts and its payload.</param>
/// <param name="UserId">The subscription's owner.</param>
/// <param name="Url">The subscription's URL.</param>
public sealed record OperatorDeliveryDetailResponse(DeliveryDetailResponse Delivery, string UserId, string Url);

/// <summary>The answer of the operator's delivery search.</summary>
/// <param name="Data">Matching deliveries, newest first.</param>
/// <param name="Limit">The most returned.</param>
/// <param name="HasMore">Whether more matched than <paramref name="Limit"/>.</param>
/// <param name="NextCursor">When <paramref name="HasMore"/>: pass it as <c>cursor</c> with the same search for the older matches.</param>
public sealed record OperatorSearchResponse(IReadOnlyList<OperatorDeliveryResponse> Data, int Limit, bool HasMore, string? NextCursor);

/// <summary>
/// The operator view's API (<c>/api/operator</c>), for Notely's support staff through an operator
/// portal session only (<see cref="AuthExtensions.OperatorPolicy"/>): any user's deliveries, found
/// by event id, delivery id, user id or URL host, any user's subscriptions by user id or host, the
/// retry of a delivery and the recovery of a subscription's failed deliveries. Every change is
/// logged with the operator who made it (<c>Operator {Operator} …</c>) and stored in the audit
/// trail (<see cref="OperatorAuditTrail"/>, <c>GET /api/operator/audit</c>).
/// </summary>
public static partial class OperatorApi
{
    /// <summary>Most deliveries one search returns.</summary>
    public const int MaxSearchResults = 100;

    [GeneratedRegex(@"^[\p{L}\p{N}._\-\[\]:]{1,255}$", RegexOptions.CultureInvariant)]
    private static partial Regex HostSyntax();

    /// <summary>Maps the operator endpoints.</summary>
    public static IEndpointRouteBuilder MapOperatorApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/operator").RequireAuthorization(AuthExtensions.OperatorPolicy).WithTags("Operator")
            .ProducesProblem(StatusCodes.Status401Unauthorized).ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        group.WithRequestTimeout(global::WebhookDispatcher.Subscriptions.DatabaseDeadline.Policy);
        group.MapGet("/deliveries", Search).WithName("OperatorSearchDeliveries")
            .WithSummary("Find deliveries of any user by event id, delivery id, user id or URL host");
        group.MapGet("/deliveries/{deliveryId:guid}", Get).WithName("OperatorGetDelivery")
            .WithSummary("One delivery of any user, with its attempts and its payload").ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/webhooks", SearchWebhooks).WithName("OperatorSearchWebhooks")
            .WithSummary("Find subscriptions of any user by user id or URL host");
        SubscriptionsApi.WithJsonBody(group.MapPost("/webhooks/{id:guid}/recover", Recover)).Accepts<RecoverRequest>("application/json")
            .WithName("OperatorRecoverDeliveries").WithMetadata(PortalReadOnly.RefusedByHandler.Instance)
            .WithSummary("Give every failed delivery of any user's subscription created since a time a new round of attempts (logged with the operator)")
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
        group.MapGet("/audit", OperatorAuditTrail.Get).WithName("OperatorAuditTrail")
            .WithSummary("The operator audit trail, newest first: every retry and recovery asked for in the operator view, with who asked and the answer");
        group.MapPost("/deliveries/{deliveryId:guid}/retry", Retry).WithName("OperatorRetryDelivery").WithMetadata(PortalReadOnly.RefusedByHandler.Instance)
            .WithSummary("Give a failed or cancelled delivery of any user a new round of attempts (logged with the operator)")
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
        return app;
    }

    private static async Task<Results<Ok<OperatorWebhooksResponse>, ValidationProblem>> SearchWebhooks(WebhookDbContext db, SecretSealer sealer,
        [FromQuery(Name = "user_id")] string? userId, [FromQuery(Name = "host")] string? host, [FromQuery(Name = "limit")] string? limitText,
        [FromQuery(Name = "cursor")] string? cursorText, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var cursor = cursorText is null ? null : PageCursor.Decode(cursorText, PageCursor.Lists.OperatorWebhooks, Guid.Empty);
        if (cursorText is not null && cursor is null) q.Errors["cursor"] = ["Not a cursor this search issued; pass next_cursor from the previous answer unchanged."];
        if (userId is not null && !AuthExtensions.IsValidUserId(userId)) q.Errors["user_id"] = ["Must be a user id: 1 to 256 characters."];
        if (host is not null && !HostSyntax().IsMatch(host)) q.Errors["host"] = ["Must be a host name or address, e.g. hooks.example.com."];
        var limit = q.Integer("limit", limitText, 50, 1, MaxSearchResults);
        if (userId is null && host is null) q.Errors["query"] = ["Give user_id or host."];
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        var subscriptions = Subscriptions(db, userId, host);
        if (cursor is not null)
            subscriptions = subscriptions.Where(s => EF.Functions.LessThan(ValueTuple.Create(s.CreatedAt, s.Id), ValueTuple.Create(cursor.CreatedAt, cursor.Id)));
        var rows = await subscriptions.OrderByDescending(s => s.CreatedAt).ThenByDescending(s => s.Id).Take(limit + 1)
            .ToListAsync(cancellationToken);
        var last = rows.Count > limit ? rows[limit - 1] : null;
        return TypedResults.Ok(new OperatorWebhooksResponse(
            [.. rows.Take(limit).Select(s => new OperatorWebhookResponse(SubscriptionResponse.From(s, sealer) with { Url = OperatorUrl(s.Url) }, s.UserId))], limit, last is not null,
            last is null ? null : new PageCursor(PageCursor.Lists.OperatorWebhooks, Guid.Empty, last.CreatedAt, last.Id).Encode()));
    }

    /// <summary>Longest first path segment operators are shown; a longer one is the URL's key (<c>https://webhook.site/&lt;uuid&gt;</c>).</summary>
    public const int MaxShownSegmentLength = 16;

    /// <summary>
    /// A subscription's URL as operators see it: scheme, host, port and the path's first segment
    /// (when it is at most <see cref="MaxShownSegmentLength"/> characters); the rest of the path and
    /// the query become <see cref="SubscriptionHeaders.MaskSuffix"/>. Many receivers carry their
    /// credential there (Slack's and Discord's incoming webhooks, Teams workflows' <c>sig</c>,
    /// Zapier's catch hooks), and an operator needs the host, not the secret. The user's own views
    /// show the URL whole; what receivers answered is shown to operators through <see cref="ForOperator(DeliveryResponse, string)"/>.
    /// </summary>
    public static string OperatorUrl(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)) return SubscriptionHeaders.MaskSuffix;
        var segments = uri.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var shown = ShownSegments(uri);
        var text = uri.GetLeftPart(UriPartial.Authority) + "/" + (shown > 0 ? segments[0] : "");
        if (segments.Length > shown) text += (shown > 0 ? "/" : "") + SubscriptionHeaders.MaskSuffix;
        else if (uri.Query.Length > 0) text += "?" + SubscriptionHeaders.MaskSuffix;
        return text;
    }

    private static int ShownSegments(Uri uri) =>
        uri.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } s && s[0].Length <= MaxShownSegmentLength ? 1 : 0;

    private static int ShownSegments(string url) => Uri.TryCreate(url, UriKind.Absolute, out var uri) ? ShownSegments(uri) : 0;

    /// <summary>
    /// A delivery as operators see it: what its receiver answered (body, reason, a redirect's
    /// <c>Location</c>, an error page that repeats the request's path) without the part of
    /// <paramref name="url"/> that <see cref="OperatorUrl"/> hides (<see cref="EchoRedaction.RedactUrl"/>).
    /// </summary>
    public static DeliveryResponse ForOperator(DeliveryResponse delivery, string url)
    {
        var shown = ShownSegments(url);
        return delivery with
        {
            ResponseBody = EchoRedaction.RedactUrl(delivery.ResponseBody, url, shown),
            ErrorMessage = EchoRedaction.RedactUrl(delivery.ErrorMessage, url, shown),
            Attempts = delivery.Attempts is null ? null : ForOperator(delivery.Attempts, url, shown),
        };
    }

    /// <summary><see cref="ForOperator(DeliveryResponse, string)"/> for a delivery's detail.</summary>
    public static DeliveryDetailResponse ForOperator(DeliveryDetailResponse delivery, string url)
    {
        var shown = ShownSegments(url);
        return delivery with
        {
            ResponseBody = EchoRedaction.RedactUrl(delivery.ResponseBody, url, shown),
            ErrorMessage = EchoRedaction.RedactUrl(delivery.ErrorMessage, url, shown),
            Attempts = ForOperator(delivery.Attempts, url, shown),
        };
    }

    private static List<AttemptResponse> ForOperator(IEnumerable<AttemptResponse> attempts, string url, int shown) =>
        [.. attempts.Select(a => a with
        {
            ErrorMessage = EchoRedaction.RedactUrl(a.ErrorMessage, url, shown),
            ResponseExcerpt = EchoRedaction.RedactUrl(a.ResponseExcerpt, url, shown),
        })];

    /// <summary>
    /// A PostgreSQL regular expression (<c>~*</c>) for URLs of <paramref name="host"/> (a host with
    /// an optional port, as the search takes it): the whole host, so <c>example.com</c> is not
    /// <c>example.com.evil.net</c> and <c>127.0.0.1:6315</c> not port 63150; written as typed, in
    /// its ASCII (punycode) or Unicode form, with or without a trailing dot; an IPv6 address with
    /// or without its brackets. URLs are stored as they were given, so an IPv6 address written
    /// another way (<c>2001:0db8:0:0::1</c>) is found only as written.
    /// </summary>
    internal static string HostPattern(string host)
    {
        host = host.ToLowerInvariant();
        var port = "";
        if (!host.StartsWith('[') && host.Count(c => c == ':') == 1)
            (host, port) = (host[..host.IndexOf(':')], host[host.IndexOf(':')..]);
        else if (host.StartsWith('[') && host.IndexOf("]:", StringComparison.Ordinal) is var close and > 0)
            (host, port) = (host[..(close + 1)], host[(close + 1)..]);
        host = host.TrimEnd('.');
        var spellings = new HashSet<string>(StringComparer.Ordinal) { host };
        if (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            spellings.Add("[" + host.Trim('[', ']') + "]");
            spellings.Add("[" + address + "]");
        }
        else
        {
            var idn = new System.Globalization.IdnMapping();
            try { spellings.Add(idn.GetAscii(host)); } catch (ArgumentException) { }
            try { spellings.Add(idn.GetUnicode(host)); } catch (ArgumentException) { }
        }
        var alternatives = string.Join('|', spellings.Where(h => !h.Contains(':') || h.StartsWith('[')).Select(Regex.Escape));
        return $"^https?://({alternatives})\\.?{Regex.Escape(port)}([:/?]|$)";
    }

    private static IQueryable<WebhookSubscription> Subscriptions(WebhookDbContext db, string? userId, string? host)
    {
        var subscriptions = db.Subscriptions.AsNoTracking();
        if (userId is not null) subscriptions = subscriptions.Where(s => s.UserId == userId);
        if (host is not null)
            subscriptions = subscriptions.Where(s => Regex.IsMatch(s.Url, HostPattern(host), RegexOptions.IgnoreCase));
        return subscriptions;
    }

    private static async Task<Results<Accepted<RecoverResponse>, ValidationProblem, ProblemHttpResult>> Recover(Guid id, HttpRequest request,
        ClaimsPrincipal user, [AsParameters] RetryServices services, ILogger<OperatorAudit> audit, OperatorAuditTrail trail, CancellationToken cancellationToken)
    {
        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        var q = new ApiInput.Query();
        var since = body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("since", out var s) && s.ValueKind == JsonValueKind.String
            ? q.Timestamp("since", s.GetString())
            : null;
        if (since is null) q.Errors["since"] = ["Required: a time with its offset, e.g. 2026-12-01T00:00:00Z."];
        if (body.RootElement.ValueKind == JsonValueKind.Object)
            foreach (var property in body.RootElement.EnumerateObject().Where(p => p.Name != "since").Take(20))
                q.Errors[property.Name] = ["Unknown field. Accepted fields: since."];
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        var subscription = await services.Db.Subscriptions.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, cancellationToken);
        if (subscription is null)
            return user.IsReadOnlySession()
                ? ReadOnlyRefused()
                : TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Webhook not found", detail: $"No webhook {id}.");
        var result = user.IsReadOnlySession()
            ? ReadOnlyRefused()
            : await SubscriptionsApi.RecoverAsync(subscription, since!.Value, services, cancellationToken);
        var operatorId = user.FindFirstValue(PortalClaims.Operator)!;
        var (status, outcome) = result.Result switch
        {
            Accepted<RecoverResponse> { Value: { } r } => (202, r.HasMore ? $"{r.Recovered} restarted, more left" : $"{r.Recovered} restarted"),
            ProblemHttpResult p => (p.StatusCode, p.ProblemDetails.Title ?? p.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            _ => (400, "refused"),
        };
        audit.LogInformation("Operator {Operator} recovered the failed deliveries since {Since} of webhook {SubscriptionId} (user {UserId}): {Outcome}",
            operatorId, since!.Value.ToString("O", System.Globalization.CultureInfo.InvariantCulture), subscription.Id, subscription.UserId, outcome);
        await trail.RecordAsync(operatorId, OperatorAuditTrail.RecoverDeliveries, subscription.Id, subscription.UserId, null, since, status, outcome);
        return result;
    }

    private static async Task<Results<Ok<OperatorSearchResponse>, ValidationProblem>> Search(WebhookDbContext db,
        [FromQuery(Name = "subscription_id")] string? subscriptionIdText,
        [FromQuery(Name = "event_id")] string? eventIdText, [FromQuery(Name = "delivery_id")] string? deliveryIdText,
        [FromQuery(Name = "user_id")] string? userId, [FromQuery(Name = "host")] string? host, [FromQuery(Name = "status")] string? statusText,
        [FromQuery(Name = "limit")] string? limitText, [FromQuery(Name = "cursor")] string? cursorText, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var cursor = cursorText is null ? null : PageCursor.Decode(cursorText, PageCursor.Lists.OperatorDeliveries, Guid.Empty);
        if (cursorText is not null && cursor is null) q.Errors["cursor"] = ["Not a cursor this search issued; pass next_cursor from the previous answer unchanged."];
        var subscriptionId = Id(q, "subscription_id", subscriptionIdText);
        var eventId = Id(q, "event_id", eventIdText);
        var deliveryId = Id(q, "delivery_id", deliveryIdText);
        if (userId is not null && !AuthExtensions.IsValidUserId(userId)) q.Errors["user_id"] = ["Must be a user id: 1 to 256 characters."];
        if (host is not null && !HostSyntax().IsMatch(host)) q.Errors["host"] = ["Must be a host name or address, e.g. hooks.example.com."];
        var status = q.OneOf("status", statusText, DeliveryStatus.All, $"Must be one of {string.Join(", ", DeliveryStatus.All)}.");
        var limit = q.Integer("limit", limitText, 50, 1, MaxSearchResults);
        if (eventIdText is null && deliveryIdText is null && userId is null && host is null && subscriptionIdText is null)
            q.Errors["query"] = ["Give at least one of event_id, delivery_id, user_id, host and subscription_id."];
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);

        var subscriptions = Subscriptions(db, userId, host);
        if (subscriptionId is { } sid) subscriptions = subscriptions.Where(s => s.Id == sid);
        var deliveries = db.Deliveries.AsNoTracking();
        if (eventId is { } e) deliveries = deliveries.Where(d => d.EventId == e);
        if (deliveryId is { } d0) deliveries = deliveries.Where(d => d.Id == d0);
        if (status is not null) deliveries = deliveries.Where(d => d.Status == status);
        if (cursor is not null)
            deliveries = deliveries.Where(d => EF.Functions.LessThan(ValueTuple.Create(d.CreatedAt, d.Id), ValueTuple.Create(cursor.CreatedAt, cursor.Id)));
        var rows = await deliveries.Join(subscriptions, d => d.SubscriptionId, s => s.Id, (d, s) => new { Delivery = d, s.UserId, s.Url })
            .OrderByDescending(r => r.Delivery.CreatedAt).ThenByDescending(r => r.Delivery.Id).Take(limit + 1).ToListAsync(cancellationToken);
        var last = rows.Count > limit ? rows[limit - 1].Delivery : null;
        return TypedResults.Ok(new OperatorSearchResponse(
            [.. rows.Take(limit).Select(r => new OperatorDeliveryResponse(ForOperator(DeliveryResponse.From(r.Delivery, false), r.Url), r.UserId, OperatorUrl(r.Url)))],
            limit, last is not null,
            last is null ? null : new PageCursor(PageCursor.Lists.OperatorDeliveries, Guid.Empty, last.CreatedAt, last.Id).Encode()));
    }

    private static async Task<Results<Ok<OperatorDeliveryDetailResponse>, ProblemHttpResult>> Get(Guid deliveryId, WebhookDbContext db,
        NpgsqlDataSource database, CancellationToken cancellationToken)
    {
        var row = await db.Deliveries.AsNoTracking().Include(d => d.Attempts).Where(d => d.Id == deliveryId)
            .Join(db.Subscriptions.AsNoTracking(), d => d.SubscriptionId, s => s.Id, (d, s) => new { Delivery = d, s.UserId, s.Url })
            .FirstOrDefaultAsync(cancellationToken);
        if (row is null) return NotFound(deliveryId);
        var payload = await DeliveryPayloadReader.ReadAsync(database, deliveryId, row.Delivery.Payload, cancellationToken);
        return TypedResults.Ok(new OperatorDeliveryDetailResponse(ForOperator(DeliveryDetailResponse.From(row.Delivery, payload), row.Url), row.UserId, OperatorUrl(row.Url)));
    }

    private static async Task<Results<Accepted<DeliveryResponse>, ProblemHttpResult>> Retry(Guid deliveryId, ClaimsPrincipal user,
        [AsParameters] RetryServices services, ILogger<OperatorAudit> audit, OperatorAuditTrail trail, CancellationToken cancellationToken)
    {
        var subscriptionId = await services.Db.Deliveries.AsNoTracking().Where(d => d.Id == deliveryId).Select(d => (Guid?)d.SubscriptionId)
            .FirstOrDefaultAsync(cancellationToken);
        var subscription = subscriptionId is { } sid
            ? await services.Db.Subscriptions.AsNoTracking().FirstOrDefaultAsync(s => s.Id == sid, cancellationToken)
            : null;
        if (subscription is null) return user.IsReadOnlySession() ? ReadOnlyRefused() : NotFound(deliveryId);
        var operatorId = user.FindFirstValue(PortalClaims.Operator)!;
        var result = user.IsReadOnlySession()
            ? ReadOnlyRefused()
            : await SubscriptionsApi.RetryAsync(subscription, deliveryId, services, cancellationToken);
        var (status, outcome) = result.Result is ProblemHttpResult p
            ? (p.StatusCode, p.ProblemDetails.Title ?? p.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture))
            : (202, "a new round of attempts started");
        audit.LogInformation("Operator {Operator} retried delivery {DeliveryId} of webhook {SubscriptionId} (user {UserId}): {Status}",
            operatorId, deliveryId, subscription.Id, subscription.UserId, status);
        await trail.RecordAsync(operatorId, OperatorAuditTrail.RetryDelivery, subscription.Id, subscription.UserId, deliveryId, null, status, outcome);
        return result;
    }

    private static Guid? Id(ApiInput.Query q, string name, string? text)
    {
        if (text is null) return null;
        if (Guid.TryParse(text, out var id)) return id;
        q.Errors[name] = ["Must be a UUID."];
        return null;
    }

    /// <summary>
    /// A read-only operator session asked for a change: refused here rather than by
    /// <see cref="PortalReadOnly"/>, so that the refusal is in the audit trail like any other.
    /// </summary>
    private static ProblemHttpResult ReadOnlyRefused() => TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden,
        title: PortalReadOnly.Title, detail: PortalReadOnly.Detail);

    private static ProblemHttpResult NotFound(Guid deliveryId) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Delivery not found", detail: $"No delivery {deliveryId}.");
}

/// <summary>A subscription as the operator view lists it: with its owner.</summary>
/// <param name="Webhook">The subscription (never its secret).</param>
/// <param name="UserId">Its owner.</param>
public sealed record OperatorWebhookResponse(SubscriptionResponse Webhook, string UserId);

/// <summary>The answer of the operator's subscription search.</summary>
/// <param name="Data">Matching subscriptions, newest first.</param>
/// <param name="Limit">The most returned.</param>
/// <param name="HasMore">Whether more matched than <paramref name="Limit"/>.</param>
/// <param name="NextCursor">When <paramref name="HasMore"/>: pass it as <c>cursor</c> with the same search for the older matches.</param>
public sealed record OperatorWebhooksResponse(IReadOnlyList<OperatorWebhookResponse> Data, int Limit, bool HasMore, string? NextCursor);

/// <summary>The log category of operator changes: each names the operator, what changed, and whose it was.</summary>
public sealed class OperatorAudit;
