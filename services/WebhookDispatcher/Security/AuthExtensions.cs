using System.ComponentModel.DataAnnotations;
using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using WebhookDispatcher.Portal;

namespace WebhookDispatcher.Security;

/// <summary>
/// JWT bearer settings (section <c>Auth</c>). Production sets <see cref="Authority"/> (an OpenID
/// Connect issuer whose keys are discovered); development and tests set <see cref="SigningKey"/>,
/// a symmetric HS256 key. Exactly one of the two must be set; an empty value counts as unset (how
/// an environment variable such as <c>Auth__SigningKey=</c> clears a setting).
/// </summary>
public sealed class AuthOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Auth";

    /// <summary>OpenID Connect authority (production): an absolute https URL whose discovery document names the signing keys.</summary>
    public string? Authority { get; set; }

    /// <summary>Expected <c>iss</c> claim.</summary>
    [Required(ErrorMessage = "Auth:Issuer is required: the iss claim the service's tokens carry.")]
    public string Issuer { get; set; } = "";

    /// <summary>Expected <c>aud</c> claim.</summary>
    [Required(ErrorMessage = "Auth:Audience is required: the aud claim the service's tokens carry.")]
    public string Audience { get; set; } = "";

    /// <summary>Symmetric signing key (development), at least 32 bytes of UTF-8.</summary>
    public string? SigningKey { get; set; }

    /// <inheritdoc />
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var hasAuthority = !string.IsNullOrEmpty(Authority);
        var hasKey = !string.IsNullOrEmpty(SigningKey);
        if (hasAuthority == hasKey)
            yield return new ValidationResult("Set exactly one of Auth:Authority (production) and Auth:SigningKey (development).",
                [nameof(Authority), nameof(SigningKey)]);
        if (hasKey && Encoding.UTF8.GetByteCount(SigningKey!) < 32)
            yield return new ValidationResult("Auth:SigningKey must be at least 32 bytes.", [nameof(SigningKey)]);
        // The JWT handler refuses a non-https authority only on the first request, so every call would answer 500.
        if (hasAuthority && !(Uri.TryCreate(Authority, UriKind.Absolute, out var authority) && authority.Scheme == Uri.UriSchemeHttps))
            yield return new ValidationResult("Auth:Authority must be an absolute https URL, e.g. https://login.example.com/.", [nameof(Authority)]);
    }

    internal SymmetricSecurityKey? SymmetricKey =>
        string.IsNullOrEmpty(SigningKey) ? null : new SymmetricSecurityKey(Encoding.UTF8.GetBytes(SigningKey));
}

/// <summary>JWT bearer authentication; the user id is the token's <c>sub</c> claim.</summary>
public static class AuthExtensions
{
    /// <summary>Adds authentication and an authorization policy that requires a <c>sub</c> claim.</summary>
    public static IHostApplicationBuilder AddAuth(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // A bearer token is either a JWT or a portal session token (wdps_…, see Portal/): one
        // default scheme that forwards by the token's prefix, so the JWT handler never sees the other.
        builder.Services.AddAuthentication(Scheme)
            .AddPolicyScheme(Scheme, Scheme, o => o.ForwardDefaultSelector = context =>
                PortalSessionHandler.CarriesSessionToken(context) ? PortalSessionHandler.SchemeName : JwtBearerDefaults.AuthenticationScheme)
            .AddJwtBearer()
            .AddScheme<AuthenticationSchemeOptions, PortalSessionHandler>(PortalSessionHandler.SchemeName, null);
        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>>((jwt, auth) =>
            {
                var o = auth.Value;
                jwt.MapInboundClaims = false;
                jwt.Authority = string.IsNullOrEmpty(o.Authority) ? null : o.Authority;
                jwt.Audience = o.Audience;
                jwt.TokenValidationParameters = new TokenValidationParameters
                {
                    ValidIssuer = o.Issuer,
                    ValidAudience = o.Audience,
                    IssuerSigningKey = o.SymmetricKey,
                    NameClaimType = JwtRegisteredClaimNames.Sub,
                    ClockSkew = TimeSpan.FromSeconds(30),
                };
                // A token without a usable user id is not a valid credential: 401, not 403.
                jwt.Events = new JwtBearerEvents
                {
                    OnTokenValidated = context =>
                    {
                        if (!IsValidUserId(context.Principal?.FindFirstValue(JwtRegisteredClaimNames.Sub)))
                            context.Fail($"The token's sub claim must be 1 to {MaxUserIdLength} characters without spaces at either end or control characters.");
                        return Task.CompletedTask;
                    },
                };
            });
        builder.Services.AddAuthorizationBuilder()
            .SetDefaultPolicy(new AuthorizationPolicyBuilder(Scheme).RequireAuthenticatedUser().RequireClaim(JwtRegisteredClaimNames.Sub).Build())
            // The operator view: an operator's portal session only (never a user's JWT or session).
            .AddPolicy(OperatorPolicy, new AuthorizationPolicyBuilder(Scheme).RequireAuthenticatedUser()
                .RequireClaim(PortalClaims.Scope, PortalClaims.OperatorScope).RequireClaim(PortalClaims.Operator).Build())
            // Signing out: a portal session of either scope (a JWT has no session to end).
            .AddPolicy(PortalSessionPolicy, new AuthorizationPolicyBuilder(Scheme).RequireAuthenticatedUser()
                .RequireClaim(PortalClaims.Session).Build());
        return builder;
    }

    /// <summary>The default authentication scheme: a JWT, or a portal session token (by its prefix).</summary>
    public const string Scheme = "BearerOrPortalSession";

    /// <summary>The authorization policy of the operator API.</summary>
    public const string OperatorPolicy = "portal-operator";

    /// <summary>The authorization policy of signing out of the portal: any portal session, user or operator, read-only or not.</summary>
    public const string PortalSessionPolicy = "portal-session";

    /// <summary>Longest accepted user id (<c>sub</c>), in characters; the <c>user_id</c> column's size.</summary>
    public const int MaxUserIdLength = 256;

    /// <summary>Whether <paramref name="sub"/> can be a user id: 1–256 characters, no control characters, not padded with spaces.</summary>
    public static bool IsValidUserId(string? sub) =>
        !string.IsNullOrWhiteSpace(sub) && sub.Length <= MaxUserIdLength && sub.Trim() == sub && !sub.Any(char.IsControl);

    /// <summary>The caller's user id (the <c>sub</c> claim).</summary>
    /// <exception cref="InvalidOperationException">No <c>sub</c> claim (the endpoint is not behind the default policy).</exception>
    public static string UserId(this ClaimsPrincipal user) =>
        user.FindFirstValue(JwtRegisteredClaimNames.Sub) ?? throw new InvalidOperationException("The token has no sub claim.");

    /// <summary>
    /// A token for <paramref name="userId"/> signed with the development key (the <c>token</c>
    /// command and the tests). Valid for <paramref name="lifetime"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">No <see cref="AuthOptions.SigningKey"/> is configured.</exception>
    public static string CreateDevelopmentToken(AuthOptions options, string userId, TimeSpan lifetime) =>
        CreateDevelopmentToken(options, userId, lifetime, null);

    /// <summary>
    /// A development token for <paramref name="userId"/> carrying <paramref name="scope"/> in its
    /// <c>scope</c> claim (e.g. the portal's operator scope); none when null.
    /// </summary>
    /// <exception cref="InvalidOperationException">No <see cref="AuthOptions.SigningKey"/> is configured.</exception>
    public static string CreateDevelopmentToken(AuthOptions options, string userId, TimeSpan lifetime, string? scope)
    {
        var key = options.SymmetricKey ?? throw new InvalidOperationException("Auth:SigningKey is not set; tokens come from the authority.");
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = options.Issuer,
            Audience = options.Audience,
            Claims = scope is null
                ? new Dictionary<string, object> { [JwtRegisteredClaimNames.Sub] = userId }
                : new Dictionary<string, object> { [JwtRegisteredClaimNames.Sub] = userId, ["scope"] = scope },
            Expires = DateTime.UtcNow + lifetime,
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.HmacSha256),
        });
    }
}
