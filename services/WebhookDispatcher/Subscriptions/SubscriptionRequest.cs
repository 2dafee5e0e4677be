using System.Net;
using System.Text.Json;
using Notely.Events;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>The fields of a create or update request that were present (null: absent).</summary>
public sealed record SubscriptionFields(
    string? Url,
    List<string>? EventTypes,
    bool HasDescription,
    string? Description,
    int? RetryCount,
    int? TimeoutSeconds,
    bool? IsActive,
    bool HasRateLimit = false,
    int? RateLimitPerSecond = null,
    Shaping.ShapingFields? Shaping = null,
    Dictionary<string, string>? Headers = null,
    string? SignatureScheme = null,
    bool HasBatch = false,
    SubscriptionBatch? Batch = null)
{
    /// <summary>The <c>ordering</c> asked for (<see cref="Deliveries.SubscriptionOrdering"/>); null: absent.</summary>
    public string? Ordering { get; init; }

    /// <summary>Whether the request changes anything.</summary>
    public bool Any => Url is not null || EventTypes is not null || HasDescription || RetryCount is not null || TimeoutSeconds is not null ||
                       IsActive is not null || HasRateLimit || Shaping?.Any == true || Headers is not null || SignatureScheme is not null ||
                       Ordering is not null || HasBatch;
}

/// <summary>The body of <c>POST /api/webhooks</c> (for the OpenAPI document; validation reads the JSON itself).</summary>
/// <param name="Url">Absolute http(s) URL, at most 2048 characters, no user info.</param>
/// <param name="EventTypes">One or more known event types, no duplicates.</param>
/// <param name="Description">Free text, at most 1024 characters.</param>
/// <param name="RetryCount">0–10, default 3.</param>
/// <param name="TimeoutSeconds">1–60, default 10.</param>
/// <param name="RateLimitPerSecond">At most this many attempts start per second (1–10000); null (the default) for no limit.</param>
/// <param name="Headers">Custom headers sent with every attempt: at most 20, each value at most 1 KiB of printable ASCII, 8 KiB in all;
/// no <c>webhook-*</c>, <c>X-Webhook-*</c>, <c>Host</c>, <c>Content-Type</c>, <c>Content-Length</c> or other framing headers. Credential values
/// (<c>Authorization</c>, names containing key, token, secret, password, cookie …) are stored sealed and shown masked.</param>
/// <param name="SignatureScheme"><c>hmac</c> (default), <c>ed25519</c> (Standard Webhooks <c>v1a</c>) or <c>both</c>.</param>
/// <param name="Filter">Payload filter (docs/webhooks.md, "Filters"); only matching events make deliveries. Null or absent: every event of its types.</param>
/// <param name="Template">{"builtin": "slack|discord|teams|text"} or {"liquid": "…", "content_type": "…"} (docs/webhooks.md, "Templates"); null or absent: the payload JSON.
/// Not with <paramref name="Batch"/>.</param>
/// <param name="Ordering"><c>none</c> (default), <c>per_key</c> or <c>strict</c> (docs/webhooks.md, "Ordered delivery").</param>
/// <param name="Batch">Batched deliveries (docs/webhooks.md, "Batched deliveries"): up to <c>max_events</c> events in one POST; null or absent: one POST per event.</param>
public sealed record CreateSubscriptionRequest(string Url, IReadOnlyList<string> EventTypes, string? Description, int? RetryCount, int? TimeoutSeconds,
    int? RateLimitPerSecond, JsonElement? Filter = null, JsonElement? Template = null, IReadOnlyDictionary<string, string>? Headers = null,
    string? SignatureScheme = null, string? Ordering = null, SubscriptionBatch? Batch = null);

/// <summary>The body of <c>POST /api/webhooks/{id}/recover</c>.</summary>
/// <param name="Since">Failed deliveries created at or after this time (RFC 3339, with its offset) get a new round of attempts.</param>
public sealed record RecoverRequest(DateTimeOffset Since);

/// <summary>
/// The body of <c>PATCH /api/webhooks/{id}</c>: any subset of the create fields (<c>rate_limit_per_second: null</c> removes the limit,
/// <c>batch: null</c> turns batching off), plus <c>is_active</c>.
/// <c>headers</c> replaces the whole set (<c>null</c> or <c>{}</c> removes them all); a credential header sent back with its masked value
/// exactly as the API showed it (ending in <c>…(redacted)</c>) keeps its stored value.
/// </summary>
public sealed record UpdateSubscriptionRequest(
    string? Url, IReadOnlyList<string>? EventTypes, string? Description, int? RetryCount, int? TimeoutSeconds, bool? IsActive,
    int? RateLimitPerSecond, JsonElement? Filter = null, JsonElement? Template = null, IReadOnlyDictionary<string, string>? Headers = null,
    string? SignatureScheme = null, string? Ordering = null, SubscriptionBatch? Batch = null);

/// <summary>
/// Reads and validates the JSON body of <c>POST /api/webhooks</c> and <c>PATCH /api/webhooks/{id}</c>
/// with the same rules, collecting an error for every bad field (keyed by its snake_case name, as
/// RFC 9457 validation problem details expect) instead of stopping at the first. Work is bounded:
/// at most <see cref="MaxEventTypes"/> items are read and a few messages kept per field.
/// </summary>
public static class SubscriptionRequest
{
    /// <summary>Longest description, in characters.</summary>
    public const int MaxDescriptionLength = 1024;

    /// <summary>Most items accepted in <c>event_types</c>.</summary>
    public const int MaxEventTypes = 100;

    private const int MaxMessagesPerField = 5;
    private const int MaxFieldsReported = 20;

    private static readonly string[] CreateFields = ["url", "event_types", "description", "retry_count", "timeout_seconds", "rate_limit_per_second",
        "headers", "signature_scheme", "ordering", SubscriptionBatch.Field, .. Shaping.ShapingFields.Names];
    private static readonly string[] UpdateFields = [.. CreateFields, "is_active"];

    /// <summary>Validates <paramref name="body"/>; returns the fields and an empty error dictionary when valid.</summary>
    /// <param name="body">The request body.</param>
    /// <param name="isCreate">Create requires <c>url</c> and <c>event_types</c> and does not accept <c>is_active</c>.</param>
    /// <param name="httpsOnly">Reject <c>http</c> URLs.</param>
    /// <param name="allowPrivateNetworks">Accept URLs whose host is a literal loopback or private address, or <c>localhost</c>.</param>
    /// <param name="maxEventBytes">The event payload cap (<c>Delivery:MaxEventBytes</c>): the largest and default <c>batch.max_bytes</c>.</param>
    public static (SubscriptionFields Fields, Dictionary<string, string[]> Errors) Read(JsonElement body, bool isCreate, bool httpsOnly,
        bool allowPrivateNetworks, int maxEventBytes = Deliveries.EventSizeLimit.DefaultMaxEventBytes)
    {
        var errors = new Dictionary<string, List<string>>();
        void Error(string field, string message)
        {
            if (!errors.TryGetValue(field, out var messages))
            {
                if (errors.Count >= MaxFieldsReported) return;
                errors[field] = messages = [];
            }
            if (messages.Count < MaxMessagesPerField && !messages.Contains(message)) messages.Add(message);
        }

        SubscriptionFields fields = new(null, null, false, null, null, null, null);
        try
        {
            if (body.ValueKind != JsonValueKind.Object) Error("body", "The request body must be a JSON object.");
            else fields = ReadObject(body, isCreate, httpsOnly, allowPrivateNetworks, maxEventBytes, Error);
        }
        catch (InvalidOperationException)
        {
            // JsonElement refuses to turn a lone surrogate escape (e.g. "\ud800") into a string.
            Error("body", "Contains a string that is not valid Unicode (a lone surrogate escape).");
        }
        return (fields, errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
    }

    private static SubscriptionFields ReadObject(JsonElement body, bool isCreate, bool httpsOnly, bool allowPrivateNetworks, int maxEventBytes,
        Action<string, string> error)
    {
        var known = isCreate ? CreateFields : UpdateFields;
        foreach (var property in body.EnumerateObject().Where(p => !known.Contains(p.Name)))
            error(property.Name, $"Unknown field. Accepted fields: {string.Join(", ", known)}.");

        string? url = null;
        if (body.TryGetProperty("url", out var u))
        {
            if (u.ValueKind != JsonValueKind.String) error("url", "Must be a string.");
            else if (UrlError(u.GetString()!, httpsOnly, allowPrivateNetworks) is { } problem) error("url", problem);
            else url = u.GetString();
        }
        else if (isCreate) error("url", "Required.");

        List<string>? eventTypes = null;
        if (body.TryGetProperty("event_types", out var e))
        {
            if (e.ValueKind != JsonValueKind.Array) error("event_types", "Must be an array of event type names.");
            else if (e.GetArrayLength() == 0) error("event_types", "Must list at least one event type.");
            else if (e.GetArrayLength() > MaxEventTypes) error("event_types", $"At most {MaxEventTypes} items.");
            else
            {
                var names = new List<string>();
                var valid = true;
                foreach (var item in e.EnumerateArray())
                {
                    valid &= item.ValueKind == JsonValueKind.String;
                    if (item.ValueKind != JsonValueKind.String) { error("event_types", "Every item must be a string."); continue; }
                    var name = item.GetString()!;
                    if (!EventCatalog.IsKnown(name)) { valid = false; error("event_types", $"Unknown event type '{Shorten(name)}'. See GET /api/webhooks/event-types."); }
                    else if (names.Contains(name)) { valid = false; error("event_types", $"'{name}' is listed twice."); }
                    else names.Add(name);
                }
                if (valid) eventTypes = names;
            }
        }
        else if (isCreate) error("event_types", "Required.");

        var hasDescription = body.TryGetProperty("description", out var d);
        string? description = null;
        if (hasDescription)
        {
            if (d.ValueKind == JsonValueKind.String)
            {
                description = d.GetString()!;
                if (description.Length > MaxDescriptionLength) error("description", $"At most {MaxDescriptionLength} characters.");
                else if (description.Any(c => char.IsControl(c) && c is not ('\n' or '\r' or '\t')))
                    error("description", "Must not contain control characters other than line breaks and tabs.");
            }
            else if (d.ValueKind != JsonValueKind.Null) error("description", "Must be a string or null.");
        }

        var retryCount = Integer(body, "retry_count", 0, WebhookSubscription.MaxRetryCount, error);
        var timeoutSeconds = Integer(body, "timeout_seconds", WebhookSubscription.MinTimeoutSeconds, WebhookSubscription.MaxTimeoutSeconds, error);

        var hasRateLimit = body.TryGetProperty("rate_limit_per_second", out var rate);
        int? rateLimit = null;
        if (hasRateLimit && rate.ValueKind != JsonValueKind.Null)
        {
            rateLimit = Integer(body, "rate_limit_per_second", 1, WebhookSubscription.MaxRateLimitPerSecond, error);
            hasRateLimit = rateLimit is not null;
        }

        bool? isActive = null;
        if (!isCreate && body.TryGetProperty("is_active", out var a))
        {
            if (a.ValueKind is JsonValueKind.True or JsonValueKind.False) isActive = a.GetBoolean();
            else error("is_active", "Must be true or false.");
        }

        Dictionary<string, string>? headers = null;
        if (body.TryGetProperty("headers", out var h)) headers = SubscriptionHeaders.Read(h, error);

        string? scheme = null;
        if (body.TryGetProperty("signature_scheme", out var sc))
        {
            if (sc.ValueKind == JsonValueKind.String && SignatureSchemes.All.Contains(sc.GetString())) scheme = sc.GetString();
            else error("signature_scheme", $"Must be one of {string.Join(", ", SignatureSchemes.All)}.");
        }

        string? ordering = null;
        if (body.TryGetProperty("ordering", out var o))
        {
            if (o.ValueKind == JsonValueKind.String && Deliveries.SubscriptionOrdering.All.Contains(o.GetString())) ordering = o.GetString();
            else error("ordering", $"Must be one of {string.Join(", ", Deliveries.SubscriptionOrdering.All)}.");
        }

        // A template that parses is tried on the examples by the handler (SubscriptionsApi.TemplateCheckAsync), in the user's turn.
        var shaping = Shaping.ShapingFields.Read(body, error);
        var (hasBatch, batch) = SubscriptionBatch.Read(body, maxEventBytes, error);
        // Both in one request: refused here; one of them against the stored other: by the handler.
        if (batch is not null && shaping.Template is not null) error(SubscriptionBatch.Field, SubscriptionBatch.WithTemplateProblem);
        return new SubscriptionFields(url, eventTypes, hasDescription, description, retryCount, timeoutSeconds, isActive, hasRateLimit, rateLimit,
            shaping, headers, scheme, hasBatch, batch) { Ordering = ordering };
    }

    private static string Shorten(string text) => text.Length <= 64 ? text : text[..64] + "…";

    private static int? Integer(JsonElement body, string field, int min, int max, Action<string, string> error)
    {
        if (!body.TryGetProperty(field, out var value)) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var number))
        {
            error(field, $"Must be a whole JSON number from {min} to {max}.");
            return null;
        }
        if (number < min || number > max)
        {
            error(field, $"Must be from {min} to {max}.");
            return null;
        }
        return number;
    }

    /// <summary>
    /// The address an authority's host spells with compatibility characters (NFKC folds fullwidth and
    /// circled digits to ASCII; IDNA maps the ideographic full stops to dots), or null when it
    /// spells none or is bracketed (IPv6, parsed as it is).
    /// </summary>
    private static IPAddress? CompatibilityAddress(string authority)
    {
        if (authority.StartsWith('[')) return null;
        var host = authority.LastIndexOf(':') is var colon and >= 0 ? authority[..colon] : authority;
        try
        {
            host = Uri.UnescapeDataString(host).Normalize(System.Text.NormalizationForm.FormKC)
                .Replace('\u3002', '.').Replace('\uFF0E', '.').Replace('\uFF61', '.').TrimEnd('.');
        }
        catch (ArgumentException)
        {
            return null; // not valid Unicode: not an address either
        }
        return IPAddress.TryParse(host, out var address) ? address : null;
    }

    private static string? UrlError(string text, bool httpsOnly, bool allowPrivateNetworks)
    {
        if (text.Length > WebhookSubscription.MaxUrlLength) return $"At most {WebhookSubscription.MaxUrlLength} characters.";
        if (text.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c is '\u200b' or '\u200c' or '\u200d' or '\ufeff'))
            return "Must not contain spaces, control or invisible characters.";
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            return "Must be an absolute http or https URL.";
        if (httpsOnly && uri.Scheme != Uri.UriSchemeHttps) return "Must be an https URL.";
        var authority = text[(text.IndexOf("//", StringComparison.Ordinal) + 2)..];
        authority = authority[..(authority.IndexOfAny(['/', '?', '#']) is var end and >= 0 ? end : authority.Length)];
        if (uri.UserInfo.Length > 0 || authority.Contains('@'))
            return "Must not contain a user name or password; authenticate with the signature instead.";
        if (uri.Port == 0) return "Port 0 is not a valid port.";
        if (uri.Fragment.Length > 0) return "Must not contain a fragment (#…).";
        if (!allowPrivateNetworks)
        {
            var host = uri.IdnHost.TrimEnd('.');
            if (uri.IsLoopback || host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
                               || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase)
                               // A literal address with a trailing dot ("127.0.0.1.") is the same address.
                               || (IPAddress.TryParse(uri.DnsSafeHost.TrimEnd('.'), out var ip) && PrivateNetworkGuard.IsNonPublic(ip))
                               // Written with characters IDNA maps to digits and dots ("127。0。0。1"): the address it connects to.
                               || (IPAddress.TryParse(host, out var mapped) && PrivateNetworkGuard.IsNonPublic(mapped))
                               // Or with compatibility forms of digits ("１２７.０.０.１", "⑫⑦.0.0.1") that a resolver may fold.
                               || (CompatibilityAddress(authority) is { } folded && PrivateNetworkGuard.IsNonPublic(folded)))
                return "Must not point to a loopback, private or link-local address.";
        }
        return null;
    }
}
