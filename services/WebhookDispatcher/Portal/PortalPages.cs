using System.Collections.Frozen;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Portal;

/// <summary>
/// Serves the portal page and its script and style, embedded in the assembly (no CDN, nothing
/// fetched at run time), with the headers that keep its token safe: <c>Referrer-Policy:
/// no-referrer</c>, a Content Security Policy that allows only the service's own script and style
/// (no inline script) and the configured <c>frame-ancestors</c>, and no caching of the page.
/// </summary>
public static class PortalPages
{
    /// <summary>The page's path.</summary>
    public const string Path = "/portal";

    private sealed record Asset(byte[] Content, string ContentType, string ETag);

    private static readonly FrozenDictionary<string, Asset> Assets = Load();

    /// <summary>The page's files (<c>wwwroot/</c>, embedded as <c>portal/{name}</c>: the page, its script modules and its style), by name.</summary>
    private static FrozenDictionary<string, Asset> Load()
    {
        var assembly = typeof(PortalPages).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith("portal/", StringComparison.Ordinal)))
        {
            var name = resource["portal/".Length..];
            var type = System.IO.Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                _ => throw new InvalidOperationException($"The portal asset {name} has a type the portal does not serve."),
            };
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var bytes = copy.ToArray();
            assets[name] = new Asset(bytes, type, $"\"{Convert.ToHexString(SHA256.HashData(bytes))[..16]}\"");
        }
        if (!assets.ContainsKey("index.html")) throw new InvalidOperationException("The portal page (index.html) is not embedded in the assembly.");
        return assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>Maps <c>GET /portal</c> and <c>GET /portal/assets/{name}</c>.</summary>
    public static IEndpointRouteBuilder MapPortalPages(this IEndpointRouteBuilder app)
    {
        // The page's links are relative (so it works under a path prefix): /portal/ would break them,
        // and a redirect keeps the fragment (browsers carry it over).
        app.MapGet(Path, (HttpContext context, IOptions<PortalOptions> options) =>
                context.Request.Path.Value!.EndsWith('/') ? Results.Redirect(context.Request.PathBase + Path) : Serve(context, "index.html", options.Value))
            .AllowAnonymous().ExcludeFromDescription();
        app.MapGet(Path + "/assets/{name}", (string name, HttpContext context, IOptions<PortalOptions> options) =>
                name != "index.html" && Assets.ContainsKey(name) ? Serve(context, name, options.Value) : Results.NotFound())
            .AllowAnonymous().ExcludeFromDescription();
        return app;
    }

    /// <summary>The Content-Security-Policy of the portal's responses.</summary>
    public static string ContentSecurityPolicy(PortalOptions options) =>
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        $"base-uri 'none'; form-action 'none'; frame-ancestors {options.FrameAncestorsDirective}";

    private static IResult Serve(HttpContext context, string name, PortalOptions options)
    {
        var asset = Assets[name];
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy(options);
        headers["Referrer-Policy"] = "no-referrer";
        headers.XContentTypeOptions = "nosniff";
        // Older browsers read only X-Frame-Options; with origins allowed, CSP alone decides.
        if (options.FrameAncestors.Trim().Length == 0) headers.XFrameOptions = "DENY";
        headers["Cross-Origin-Opener-Policy"] = "same-origin";
        headers.CacheControl = name == "index.html" ? "no-store" : "no-cache";
        headers.ETag = asset.ETag;
        if (context.Request.Headers.IfNoneMatch == asset.ETag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Content, asset.ContentType);
    }
}
