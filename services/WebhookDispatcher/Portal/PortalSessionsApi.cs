using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Portal;

/// <summary>The body of <c>POST /api/webhooks/portal-sessions</c> and <c>POST /api/operator/portal-sessions</c>.</summary>
/// <param name="ReadOnly">Whether the session may only look (default false).</param>
/// <param name="ExpiresInSeconds">How long the link may be opened, 60–86400 seconds (default 3600). The session it opens lasts <c>Portal:SessionMinutes</c> from then.</param>
/// <param name="UserId">The user whose portal it opens, from a service credential (a JWT whose scope includes <c>Portal:ServiceScope</c>) only; a user's own JWT leaves it out. Not on operator links.</param>
public sealed record PortalSessionRequest(bool? ReadOnly, int? ExpiresInSeconds, string? UserId);

/// <summary>A portal link.</summary>
/// <param name="Url">The link to open in a browser (or an iframe); its single-use token is in the fragment, which browsers never send to a server.</param>
/// <param name="ExpiresAt">Until when the link can be opened (UTC); it opens once.</param>
/// <param name="ReadOnly">Whether the session it opens may only look.</param>
public sealed record PortalLinkResponse(string Url, DateTimeOffset ExpiresAt, bool ReadOnly);

/// <summary>The body of <c>POST /portal/session</c>: the link token from the page's fragment.</summary>
/// <param name="Token">The <c>wdpl_…</c> token.</param>
public sealed record OpenPortalSessionRequest(string Token);

/// <summary>A portal session: the bearer token the page keeps in memory, and what it may do.</summary>
/// <param name="SessionToken">Send as <c>Authorization: Bearer …</c> on API calls until <paramref name="ExpiresAt"/>.</param>
/// <param name="ExpiresAt">When the session ends (UTC).</param>
/// <param name="ReadOnly">Whether it may only look.</param>
/// <param name="Scope"><c>user</c> or <c>operator</c>.</param>
/// <param name="UserId">The user whose webhooks a user session shows; null for an operator.</param>
/// <param name="Operator">The operator an operator session belongs to; null for a user.</param>
public sealed record PortalSessionResponse(string SessionToken, DateTimeOffset ExpiresAt, bool ReadOnly, string Scope, string? UserId, string? Operator);

/// <summary>
/// Minting portal links (a user's JWT for their own portal, an operator-scoped JWT for the
/// operator view) and opening them. The link token is single-use and travels only in the URL
/// fragment and in the body of the POST that opens it; docs/portal.md describes the flow.
/// </summary>
public static class PortalSessionsApi
{
    /// <summary>Shortest link lifetime, in seconds.</summary>
    public const int MinExpiresInSeconds = 60;

    /// <summary>Longest link lifetime, in seconds (one day).</summary>
    public const int MaxExpiresInSeconds = 86_400;

    /// <summary>Link lifetime when none is given, in seconds.</summary>
    public const int DefaultExpiresInSeconds = 3_600;

    /// <summary>Maps the four endpoints: minting links (user and operator), opening one, and signing out.</summary>
    public static IEndpointRouteBuilder MapPortalSessions(this IEndpointRouteBuilder app)
    {
        SubscriptionsApi.WithJsonBody(app.MapPost("/api/webhooks/portal-sessions", MintForUser)).RequireAuthorization().WithTags("Portal").WithName("CreatePortalSession")
            .Accepts<PortalSessionRequest>("application/json")
            .WithSummary("A single-use link to the delivery portal for the caller (a user's JWT), or for the user_id a service credential names")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable).WithRequestTimeout(Subscriptions.DatabaseDeadline.Policy);
        SubscriptionsApi.WithJsonBody(app.MapPost("/api/operator/portal-sessions", MintForOperator)).RequireAuthorization().WithTags("Portal").WithName("CreateOperatorPortalSession")
            .Accepts<PortalSessionRequest>("application/json")
            .WithSummary("A single-use link to the operator view (a JWT carrying the operator scope, Portal:OperatorScope)")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable).WithRequestTimeout(Subscriptions.DatabaseDeadline.Policy);
        SubscriptionsApi.WithJsonBody(app.MapPost("/portal/session", Open)).AllowAnonymous().WithTags("Portal").WithName("OpenPortalSession")
            .Accepts<OpenPortalSessionRequest>("application/json")
            .WithSummary("Trade a portal link's token (from its fragment) for a session token, once")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable).WithRequestTimeout(Subscriptions.DatabaseDeadline.Policy);
        app.MapDelete("/portal/session", End).RequireAuthorization(AuthExtensions.PortalSessionPolicy).WithTags("Portal").WithName("EndPortalSession")
            .WithSummary("Sign out: end the calling portal session now (its bearer is refused from then on)")
            .WithDescription("Takes the session's own bearer (wdps_…), read-only sessions included; a JWT gets 403. " +
                             "The link that opened the session stays used.")
            .ProducesProblem(StatusCodes.Status401Unauthorized).ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable).WithRequestTimeout(Subscriptions.DatabaseDeadline.Policy);
        return app;
    }

    private static async Task<NoContent> End(ClaimsPrincipal user, PortalSessionStore store, CancellationToken cancellationToken)
    {
        await store.EndAsync(Guid.Parse(user.FindFirstValue(PortalClaims.Session)!), cancellationToken);
        return TypedResults.NoContent();
    }

    private static Task<Results<Created<PortalLinkResponse>, ValidationProblem, ProblemHttpResult>> MintForUser(
        HttpRequest request, ClaimsPrincipal user, PortalSessionStore store, IOptions<PortalOptions> options, CancellationToken cancellationToken) =>
        MintAsync(request, user, store, options.Value, asOperator: false, cancellationToken);

    private static Task<Results<Created<PortalLinkResponse>, ValidationProblem, ProblemHttpResult>> MintForOperator(
        HttpRequest request, ClaimsPrincipal user, PortalSessionStore store, IOptions<PortalOptions> options, CancellationToken cancellationToken) =>
        MintAsync(request, user, store, options.Value, asOperator: true, cancellationToken);

    private static async Task<Results<Created<PortalLinkResponse>, ValidationProblem, ProblemHttpResult>> MintAsync(
        HttpRequest request, ClaimsPrincipal user, PortalSessionStore store, PortalOptions options, bool asOperator, CancellationToken cancellationToken)
    {
        // A session must not mint links: that would let a read-only or short session extend itself.
        if (user.IsPortalSession())
            return TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Portal sessions cannot create portal links",
                detail: "Ask for a portal link with the user's JWT (or an operator-scoped JWT for the operator view).");
        if (asOperator && !HasScope(user, options.OperatorScope))
            return TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Operator scope required",
                detail: $"Operator portal links need a token whose scope includes {options.OperatorScope}.");

        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        var (readOnly, expiresIn, named, errors) = Read(body.RootElement, allowUserId: !asOperator);
        if (named is not null && !HasScope(user, options.ServiceScope))
            errors["user_id"] = [$"Only a service credential whose scope includes {options.ServiceScope} may name the user; a user's own JWT leaves it out."];
        // A service credential that forgets the user would open a portal for the service account itself.
        else if (named is null && !asOperator && HasScope(user, options.ServiceScope) && !errors.ContainsKey("user_id"))
            errors["user_id"] = [$"Required with a service credential (scope {options.ServiceScope}): the user whose portal the link opens."];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        var sub = user.UserId();
        var owner = asOperator ? null : named ?? sub;
        var minted = await store.MintAsync(owner, asOperator ? sub : null, readOnly, sub, expiresIn, options.LinksPerMinute, cancellationToken);
        if (minted.Token is not { } token || minted.ExpiresAt is not { } expiresAt)
        {
            // RFC 9110 §10.2.3: whole seconds, when the window has room again.
            var seconds = minted.RetryAfterSeconds;
            request.HttpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many portal links",
                detail: $"At most {options.LinksPerMinute} portal links may be made for one portal in any 60 seconds (Portal:LinksPerMinute); "
                    + $"the next one is allowed in {seconds} s. A link is single-use and its session lasts, so one per visit is enough.",
                extensions: new Dictionary<string, object?> { ["limit"] = options.LinksPerMinute, ["retry_after_seconds"] = seconds });
        }
        var page = options.PublicUrl.Length > 0 ? options.PublicUrl : $"{request.Scheme}://{request.Host}/portal";
        return TypedResults.Created((string?)null, new PortalLinkResponse($"{page}#token={token}", expiresAt, readOnly));
    }

    private static async Task<Results<Ok<PortalSessionResponse>, ValidationProblem, ProblemHttpResult>> Open(
        HttpRequest request, PortalSessionStore store, IOptions<PortalOptions> options, CancellationToken cancellationToken)
    {
        request.HttpContext.Response.Headers.CacheControl = "no-store";
        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        if (body.RootElement.ValueKind != JsonValueKind.Object || !body.RootElement.TryGetProperty("token", out var t) || t.ValueKind != JsonValueKind.String)
            return ApiInput.Invalid("token", "Required: the token from the portal link's fragment.");
        // As everywhere in the API, an unknown field is refused (and the link is not used up).
        foreach (var property in body.RootElement.EnumerateObject())
            if (property.Name != "token") return ApiInput.Invalid(property.Name, "Unknown field. Accepted fields: token.");
        var opened = await store.OpenAsync(t.GetString()!, options.Value.SessionMinutes, cancellationToken);
        if (opened is not { } o)
            return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Portal link not valid",
                detail: "This portal link has expired, has been used already, or is not a link we issued. Ask for a new one.");
        var s = o.Session;
        return TypedResults.Ok(new PortalSessionResponse(o.Token, s.ExpiresAt, s.ReadOnly,
            s.UserId is null ? PortalClaims.OperatorScope : PortalClaims.UserScope, s.UserId, s.Operator));
    }

    /// <summary>Whether the JWT's <c>scope</c> (space-separated, RFC 8693 §4.2) or <c>scp</c> claims include <paramref name="scope"/>.</summary>
    private static bool HasScope(ClaimsPrincipal user, string scope) =>
        user.FindAll("scope").Concat(user.FindAll("scp")).SelectMany(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Contains(scope);

    private static (bool ReadOnly, int ExpiresIn, string? UserId, Dictionary<string, string[]> Errors) Read(JsonElement body, bool allowUserId)
    {
        var errors = new Dictionary<string, string[]>();
        var readOnly = false;
        var expiresIn = DefaultExpiresInSeconds;
        string? userId = null;
        if (body.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = ["The request body must be a JSON object."];
            return (readOnly, expiresIn, userId, errors);
        }
        foreach (var property in body.EnumerateObject())
        {
            switch (property.Name)
            {
                case "read_only":
                    if (property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False) readOnly = property.Value.GetBoolean();
                    else errors["read_only"] = ["Must be true or false."];
                    break;
                case "expires_in_seconds":
                    if (property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetInt32(out var seconds)
                                                                      && seconds is >= MinExpiresInSeconds and <= MaxExpiresInSeconds)
                        expiresIn = seconds;
                    else errors["expires_in_seconds"] = [$"Must be a whole JSON number from {MinExpiresInSeconds} to {MaxExpiresInSeconds}."];
                    break;
                case "user_id" when allowUserId:
                    if (property.Value.ValueKind == JsonValueKind.String && AuthExtensions.IsValidUserId(property.Value.GetString())) userId = property.Value.GetString();
                    else errors["user_id"] = [$"Must be a user id: 1 to {AuthExtensions.MaxUserIdLength} characters, no control characters, no spaces at either end."];
                    break;
                default:
                    if (errors.Count < 20)
                        errors[property.Name] = [allowUserId ? "Unknown field. Accepted fields: read_only, expires_in_seconds, user_id." : "Unknown field. Accepted fields: read_only, expires_in_seconds."];
                    break;
            }
        }
        return (readOnly, expiresIn, userId, errors);
    }
}
