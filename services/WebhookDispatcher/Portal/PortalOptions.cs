using System.ComponentModel.DataAnnotations;

namespace WebhookDispatcher.Portal;

/// <summary>Settings of the delivery portal (section <c>Portal</c>); docs/portal.md explains each.</summary>
public sealed class PortalOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Portal";

    /// <summary>
    /// The origins allowed to show the portal in an iframe, as the CSP <c>frame-ancestors</c>
    /// directive takes them (W3C CSP Level 3 §6.4.2), separated by spaces, e.g.
    /// <c>https://app.notely.com https://*.notely.com</c>, or <c>'self'</c>. Empty (the default)
    /// allows no page to embed it (<c>'none'</c>). Also taken as a list, one source an entry (a JSON
    /// array in appsettings, <c>Portal__FrameAncestors__0</c> … in the environment): see
    /// <see cref="ListedFrameAncestors"/>.
    /// </summary>
    [MaxLength(2048)]
    public string FrameAncestors { get; set; } = "";

    /// <summary>
    /// <see cref="FrameAncestors"/> given as a list under <paramref name="section"/>
    /// (<c>Portal:FrameAncestors</c>): its entries, after a value of the section itself if any,
    /// joined with spaces; null when it has no entries (the binder reads the plain value alone,
    /// and would ignore a list).
    /// </summary>
    /// <exception cref="Security.StartupRefusedException">An entry is a section of its own rather than a source.</exception>
    public static string? ListedFrameAncestors(IConfigurationSection section)
    {
        var entries = section.GetChildren().ToList();
        if (entries.Count == 0) return null;
        if (entries.FirstOrDefault(e => e.Value is null) is { } nested)
            throw new Security.StartupRefusedException(
                $"Portal:FrameAncestors:{nested.Key} must be one source such as https://app.example.com, not a section of its own.");
        return string.Join(' ', new[] { section.Value }.Concat(entries.Select(e => e.Value)).Where(v => !string.IsNullOrWhiteSpace(v)));
    }

    /// <summary>
    /// The portal page's absolute URL as browsers reach it, e.g. <c>https://webhooks.notely.com/portal</c>,
    /// used to build the links <c>POST /api/webhooks/portal-sessions</c> returns. Empty: the
    /// scheme and host of the request that asked for the link, and <c>/portal</c>.
    /// </summary>
    public string PublicUrl { get; set; } = "";

    /// <summary>
    /// Portal links that may be made for one portal (a user's, or an operator's) in any 60 seconds
    /// (1–10,000, default 30); past it, 429 with <c>Retry-After</c>. A link is a row until a day
    /// after it ends, so this bounds what one credential can store.
    /// </summary>
    [Range(1, 10_000)]
    public int LinksPerMinute { get; set; } = 30;

    /// <summary>Minutes a portal session lasts after its link was opened (5–1440, default 60).</summary>
    [Range(5, 1440)]
    public int SessionMinutes { get; set; } = 60;

    /// <summary>
    /// The OAuth scope (in the JWT's <c>scope</c> or <c>scp</c> claim) that lets a caller mint
    /// operator portal links with <c>POST /api/operator/portal-sessions</c>. Default
    /// <c>webhooks:operator</c>; give it only to Notely's support staff.
    /// </summary>
    [Required, RegularExpression(@"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$", ErrorMessage = "Portal:OperatorScope must be one OAuth scope token (RFC 6749 §3.3).")]
    public string OperatorScope { get; set; } = "webhooks:operator";

    /// <summary>
    /// The OAuth scope that lets a service credential (Notely's backend) ask for a user's portal
    /// link by naming the user (<c>user_id</c> in the body) instead of presenting the user's JWT.
    /// Default <c>webhooks:portal-links</c>.
    /// </summary>
    [Required, RegularExpression(@"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$", ErrorMessage = "Portal:ServiceScope must be one OAuth scope token (RFC 6749 §3.3).")]
    public string ServiceScope { get; set; } = "webhooks:portal-links";

    /// <inheritdoc />
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PublicUrl.Length > 0 && !(Uri.TryCreate(PublicUrl, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
                                      && url.Fragment.Length == 0 && url.Query.Length == 0))
            yield return new ValidationResult("Portal:PublicUrl must be an absolute http(s) URL without query or fragment.", [nameof(PublicUrl)]);
        foreach (var source in FrameAncestors.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(s => s != "'self'"))
            if (source.Any(c => c is ';' or ',' or '\'' or '"' || char.IsControl(c)) || !(source.Contains("://") || source.EndsWith(':')))
                yield return new ValidationResult(
                    $"Portal:FrameAncestors: '{source}' is not an origin such as https://app.example.com (scheme, host, optional port).",
                    [nameof(FrameAncestors)]);
    }

    /// <summary>The <c>frame-ancestors</c> value: the configured sources, or <c>'none'</c>.</summary>
    public string FrameAncestorsDirective =>
        FrameAncestors.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } sources ? string.Join(' ', sources) : "'none'";
}
