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
    bool? IsActive);

/// <summary>
/// Reads and validates the JSON body of <c>POST /api/webhooks</c> and <c>PATCH /api/webhooks/{id}</c>
/// with the same rules, collecting an error for every bad field (keyed by its snake_case name, as
/// RFC 9457 validation problem details expect) instead of stopping at the first.
/// </summary>
public static class SubscriptionRequest
{
    /// <summary>Longest description, in characters.</summary>
    public const int MaxDescriptionLength = 1024;

    private static readonly string[] CreateFields = ["url", "event_types", "description", "retry_count", "timeout_seconds"];
    private static readonly string[] UpdateFields = [.. CreateFields, "is_active"];

    /// <summary>Validates <paramref name="body"/>; returns the fields and an empty error dictionary when valid.</summary>
    /// <param name="body">The request body.</param>
    /// <param name="isCreate">Create requires <c>url</c> and <c>event_types</c> and does not accept <c>is_active</c>.</param>
    /// <param name="httpsOnly">Reject <c>http</c> URLs.</param>
    /// <param name="allowPrivateNetworks">Accept URLs whose host is a literal loopback or private address, or <c>localhost</c>.</param>
    public static (SubscriptionFields Fields, Dictionary<string, string[]> Errors) Read(JsonElement body, bool isCreate, bool httpsOnly,
        bool allowPrivateNetworks)
    {
        var errors = new Dictionary<string, string[]>();
        void Error(string field, string message) => errors[field] = [.. errors.GetValueOrDefault(field, []), message];

        if (body.ValueKind != JsonValueKind.Object)
        {
            Error("body", "The request body must be a JSON object.");
            return (new SubscriptionFields(null, null, false, null, null, null, null), errors);
        }

        var known = isCreate ? CreateFields : UpdateFields;
        foreach (var property in body.EnumerateObject().Where(p => !known.Contains(p.Name)))
            Error(property.Name, $"Unknown field. Accepted fields: {string.Join(", ", known)}.");

        string? url = null;
        if (body.TryGetProperty("url", out var u))
        {
            if (u.ValueKind != JsonValueKind.String) Error("url", "Must be a string.");
            else if (UrlError(u.GetString()!, httpsOnly, allowPrivateNetworks) is { } problem) Error("url", problem);
            else url = u.GetString();
        }
        else if (isCreate) Error("url", "Required.");

        List<string>? eventTypes = null;
        if (body.TryGetProperty("event_types", out var e))
        {
            if (e.ValueKind != JsonValueKind.Array) Error("event_types", "Must be an array of event type names.");
            else if (e.GetArrayLength() == 0) Error("event_types", "Must list at least one event type.");
            else
            {
                var names = new List<string>();
                foreach (var item in e.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String) { Error("event_types", "Every item must be a string."); continue; }
                    var name = item.GetString()!;
                    if (!EventCatalog.IsKnown(name)) Error("event_types", $"Unknown event type '{name}'. See GET /api/webhooks/event-types.");
                    else if (names.Contains(name)) Error("event_types", $"'{name}' is listed twice.");
                    else names.Add(name);
                }
                if (!errors.ContainsKey("event_types")) eventTypes = names;
            }
        }
        else if (isCreate) Error("event_types", "Required.");

        var hasDescription = body.TryGetProperty("description", out var d);
        string? description = null;
        if (hasDescription)
        {
            if (d.ValueKind == JsonValueKind.String)
            {
                description = d.GetString();
                if (description!.Length > MaxDescriptionLength) Error("description", $"At most {MaxDescriptionLength} characters.");
            }
            else if (d.ValueKind != JsonValueKind.Null) Error("description", "Must be a string or null.");
        }

        var retryCount = Integer(body, "retry_count", 0, WebhookSubscription.MaxRetryCount, Error);
        var timeoutSeconds = Integer(body, "timeout_seconds", WebhookSubscription.MinTimeoutSeconds, WebhookSubscription.MaxTimeoutSeconds, Error);

        bool? isActive = null;
        if (!isCreate && body.TryGetProperty("is_active", out var a))
        {
            if (a.ValueKind is JsonValueKind.True or JsonValueKind.False) isActive = a.GetBoolean();
            else Error("is_active", "Must be true or false.");
        }

        return (new SubscriptionFields(url, eventTypes, hasDescription, description, retryCount, timeoutSeconds, isActive), errors);
    }

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

    private static string? UrlError(string text, bool httpsOnly, bool allowPrivateNetworks)
    {
        if (text.Length > WebhookSubscription.MaxUrlLength) return $"At most {WebhookSubscription.MaxUrlLength} characters.";
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            return "Must be an absolute http or https URL.";
        if (httpsOnly && uri.Scheme != Uri.UriSchemeHttps) return "Must be an https URL.";
        if (uri.UserInfo.Length > 0) return "Must not contain a user name or password; authenticate with the signature instead.";
        if (uri.Fragment.Length > 0) return "Must not contain a fragment (#…).";
        if (!allowPrivateNetworks && (uri.IsLoopback || (IPAddress.TryParse(uri.DnsSafeHost, out var ip) && PrivateNetworkGuard.IsNonPublic(ip))))
            return "Must not point to a loopback, private or link-local address.";
        return null;
    }
}
