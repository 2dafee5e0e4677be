using System.Globalization;
using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;

namespace WebhookDispatcher.Portal;

/// <summary>The claims a portal session's principal carries besides <c>sub</c> (a user session's user id).</summary>
public static class PortalClaims
{
    /// <summary>The session's id.</summary>
    public const string Session = "portal_session";

    /// <summary><see cref="UserScope"/> or <see cref="OperatorScope"/>.</summary>
    public const string Scope = "portal_scope";

    /// <summary><c>true</c> for a read-only session.</summary>
    public const string ReadOnly = "portal_read_only";

    /// <summary>The operator's identity (an operator session's only identity: it has no <c>sub</c>, so the user API refuses it).</summary>
    public const string Operator = "portal_operator";

    /// <summary>Value of <see cref="Scope"/> for a user's session.</summary>
    public const string UserScope = "user";

    /// <summary>Value of <see cref="Scope"/> for an operator's session.</summary>
    public const string OperatorScope = "operator";

    /// <summary>Whether <paramref name="user"/> came from a portal session (of either scope).</summary>
    public static bool IsPortalSession(this ClaimsPrincipal user) => user.HasClaim(c => c.Type == Scope);

    /// <summary>Whether <paramref name="user"/> is a read-only portal session.</summary>
    public static bool IsReadOnlySession(this ClaimsPrincipal user) => user.HasClaim(ReadOnly, "true");
}

/// <summary>
/// Authenticates <c>Authorization: Bearer wdps_…</c> (a portal session token) by the token's hash
/// in <see cref="PortalSessionStore"/>: a user session becomes a principal with the user's
/// <c>sub</c>, so the management API serves it with its own rules (ownership, validation,
/// limits); an operator session gets no <c>sub</c> and reaches only the operator API.
/// </summary>
internal sealed class PortalSessionHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    PortalSessionStore store) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    /// <summary>The scheme's name.</summary>
    public const string SchemeName = "PortalSession";

    /// <summary>Whether a request's <c>Authorization</c> header carries a portal session token (else it is a JWT).</summary>
    public static bool CarriesSessionToken(HttpContext context) =>
        context.Request.Headers.Authorization.ToString().StartsWith("Bearer " + PortalTokens.SessionPrefix, StringComparison.Ordinal);

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (!CarriesSessionToken(Context)) return AuthenticateResult.NoResult();
        var token = Context.Request.Headers.Authorization.ToString()["Bearer ".Length..].Trim();
        var session = await store.FindAsync(token, Context.RequestAborted);
        if (session is null) return AuthenticateResult.Fail("The portal session has ended or is not valid; open a new portal link.");
        List<Claim> claims =
        [
            new(PortalClaims.Session, session.Id.ToString()),
            new(PortalClaims.ReadOnly, session.ReadOnly ? "true" : "false"),
            new(PortalClaims.Scope, session.UserId is null ? PortalClaims.OperatorScope : PortalClaims.UserScope),
            new("portal_expires_at", session.ExpiresAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)),
        ];
        if (session.UserId is { } userId) claims.Add(new Claim(JwtRegisteredClaimNames.Sub, userId));
        if (session.Operator is { } operatorId) claims.Add(new Claim(PortalClaims.Operator, operatorId));
        var identity = new ClaimsIdentity(claims, SchemeName, JwtRegisteredClaimNames.Sub, null);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }
}

/// <summary>
/// Refuses every request that could change something (any method but GET, HEAD and OPTIONS)
/// from a read-only portal session with 403 and problem details, whatever the endpoint: the
/// rule lives in one place, so a new endpoint cannot forget it. Signing out is the one
/// exception: it ends the session and touches nothing else.
/// </summary>
internal static class PortalReadOnly
{
    /// <summary>Adds the check; call after <c>UseAuthentication</c>.</summary>
    public static IApplicationBuilder UsePortalReadOnly(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var method = context.Request.Method;
        if (context.User.IsReadOnlySession() && !(HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method))
            && !IsSignOut(context.Request) && !IsOperatorChange(context))
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
            {
                HttpContext = context,
                ProblemDetails = { Status = 403, Title = Title, Detail = Detail },
            });
            return;
        }
        await next(context);
    });

    /// <summary>The refusal's title.</summary>
    public const string Title = "Read-only portal session";

    /// <summary>The refusal's detail.</summary>
    public const string Detail = "This portal link was issued read-only: it can look, not change anything.";

    /// <summary>
    /// Endpoint metadata of a change whose handler refuses a read-only session itself, after finding
    /// what was asked for, so that the refusal is audited (the operator's retry and recover; docs/portal.md).
    /// </summary>
    public sealed class RefusedByHandler
    {
        /// <summary>The one instance, for <c>WithMetadata</c>.</summary>
        public static RefusedByHandler Instance { get; } = new();
    }

    private static bool IsOperatorChange(HttpContext context) => context.GetEndpoint()?.Metadata.GetMetadata<RefusedByHandler>() is not null;

    /// <summary>Signing out (<c>DELETE /portal/session</c>) changes only the session itself, so a read-only session may.</summary>
    private static bool IsSignOut(HttpRequest request) =>
        HttpMethods.IsDelete(request.Method) && string.Equals(request.Path.Value, "/portal/session", StringComparison.OrdinalIgnoreCase);
}
