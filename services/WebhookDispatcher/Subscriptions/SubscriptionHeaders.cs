using System.Collections.Concurrent;
using System.Text.Json;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// A subscription's custom headers (<c>headers</c>): read and checked from the API, stored with
/// credential values sealed (column <c>headers</c>, a JSON object), shown masked, and opened for
/// the requests. Names are compared without regard to case, as HTTP does.
/// </summary>
public static class SubscriptionHeaders
{
    /// <summary>Most headers a subscription may have.</summary>
    public const int MaxCount = 20;

    /// <summary>Longest value, in characters (printable ASCII, so also bytes).</summary>
    public const int MaxValueLength = 1024;

    /// <summary>Most characters of all names and values together.</summary>
    public const int MaxTotalLength = 8192;

    /// <summary>Longest name, in characters.</summary>
    public const int MaxNameLength = 256;

    /// <summary>
    /// What a masked value ends with. A credential value is shown as its first four characters
    /// (none when shorter than 16) and this; values may only hold printable ASCII, so no real value
    /// ends with it. Sent back unchanged in a <c>PATCH</c>, it keeps the stored value.
    /// </summary>
    public const string MaskSuffix = "…(redacted)";

    /// <summary>
    /// Names refused because they would change what the receiver verifies or how HTTP frames the
    /// request (besides every <c>webhook-*</c> and <c>X-Webhook-*</c> name).
    /// </summary>
    public static readonly IReadOnlySet<string> RefusedNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
        "Proxy-Authorization", "Proxy-Authenticate", "TE", "Trailer", "Upgrade", "Expect", "User-Agent",
    };

    /// <summary>Parts of a name that make its value a credential: stored sealed, never shown in full.</summary>
    public static readonly IReadOnlyList<string> CredentialNameParts =
        ["auth", "key", "token", "secret", "password", "passwd", "pwd", "cookie", "credential", "session", "signature", "private"];

    private const int MaxCached = 100_000;
    private static readonly ConcurrentDictionary<string, IReadOnlyDictionary<string, string>> Opened = new(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="name"/> is one of the dispatcher's own headers (<c>webhook-*</c>, <c>X-Webhook-*</c>: ids, timestamps, signatures).</summary>
    public static bool IsDispatcherName(string name) =>
        name.StartsWith("webhook-", StringComparison.OrdinalIgnoreCase) || name.StartsWith("X-Webhook-", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether values of header <paramref name="name"/> are credentials (<c>Authorization</c>, names containing <c>key</c>, <c>token</c>, <c>secret</c> …).</summary>
    public static bool IsCredential(string name) => CredentialNameParts.Any(part => name.Contains(part, StringComparison.OrdinalIgnoreCase));

    /// <summary>What the API shows of a value: credentials masked (<see cref="MaskSuffix"/>), others in full.</summary>
    public static string Shown(string name, string value) =>
        IsCredential(name) ? (value.Length >= 16 ? value[..4] : "") + MaskSuffix : value;

    /// <summary>
    /// Reads the <c>headers</c> field of a create or update: a JSON object of names to string
    /// values, or null (none: an empty set). Every problem is reported on <c>headers</c> naming the
    /// header; returns null on any. A credential header whose value is the masked form (ends with
    /// <see cref="MaskSuffix"/>) is passed through as it is, for <see cref="KeepMasked"/>.
    /// </summary>
    public static Dictionary<string, string>? Read(JsonElement headers, Action<string, string> error)
    {
        const string field = "headers";
        if (headers.ValueKind == JsonValueKind.Null) return new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (headers.ValueKind != JsonValueKind.Object)
        {
            error(field, "Must be a JSON object of header names to string values, or null.");
            return null;
        }
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var valid = true;
        var count = 0;
        var total = 0;
        foreach (var property in headers.EnumerateObject())
        {
            if (++count > MaxCount)
            {
                error(field, $"At most {MaxCount} headers.");
                return null;
            }
            var name = property.Name;
            var shown = name.Length <= 64 ? name : name[..64] + "…";
            if (NameProblem(name) is { } problem) { error(field, $"'{shown}': {problem}"); valid = false; continue; }
            if (result.ContainsKey(name)) { error(field, $"'{shown}' is listed twice (names are not case-sensitive)."); valid = false; continue; }
            if (property.Value.ValueKind != JsonValueKind.String) { error(field, $"'{shown}': the value must be a string."); valid = false; continue; }
            var value = property.Value.GetString()!;
            if (IsCredential(name) && value.EndsWith(MaskSuffix, StringComparison.Ordinal) && value.Length <= 4 + MaskSuffix.Length)
            {
                // The masked form sent back: KeepMasked puts the stored value in its place.
            }
            else if (value.StartsWith(ReservedPrefix, StringComparison.OrdinalIgnoreCase))
            {
                // Only the service seals: a value that looks sealed is never opened for a tenant.
                error(field, $"'{shown}': values starting with \"{ReservedPrefix}\" are reserved for what the service stores sealed.");
                valid = false;
                continue;
            }
            else if (value.Length > MaxValueLength) { error(field, $"'{shown}': the value is longer than {MaxValueLength} characters."); valid = false; continue; }
            else if (value.Length == 0 || value.Any(c => c is not ('\t' or (>= ' ' and <= '~'))) || value[0] is ' ' or '\t' || value[^1] is ' ' or '\t')
            {
                error(field, $"'{shown}': the value must be 1 to {MaxValueLength} printable ASCII characters without line breaks or spaces at either end.");
                valid = false;
                continue;
            }
            total += name.Length + value.Length;
            result[name] = value;
        }
        if (total > MaxTotalLength)
        {
            error(field, $"Names and values together are {total} characters; at most {MaxTotalLength}.");
            return null;
        }
        return valid ? result : null;
    }

    /// <summary>
    /// Puts the stored value in place of each masked credential value of <paramref name="headers"/>
    /// (<paramref name="current"/>: the stored headers, opened; null on a create). A masked value
    /// with nothing stored under its name is an error naming the header; returns false then.
    /// </summary>
    public static bool KeepMasked(Dictionary<string, string> headers, IReadOnlyDictionary<string, string>? current, Action<string, string> error)
    {
        var ok = true;
        foreach (var (name, value) in headers.ToList())
        {
            if (!IsCredential(name) || !value.EndsWith(MaskSuffix, StringComparison.Ordinal)) continue;
            if (current is not null && current.TryGetValue(name, out var kept) && Shown(name, kept) == value) headers[name] = kept;
            else
            {
                error("headers", $"'{name}': a masked value keeps the stored value only when it is exactly what the API shows for it; send the value itself.");
                ok = false;
            }
        }
        if (ok && headers.Sum(h => h.Key.Length + h.Value.Length) is var total and > MaxTotalLength)
        {
            error("headers", $"Names and values together are {total} characters; at most {MaxTotalLength}.");
            ok = false;
        }
        return ok;
    }

    /// <summary>The start of a sealed value (<see cref="SecretSealer.Prefix"/>'s scheme): refused in any header value a tenant sends.</summary>
    public const string ReservedPrefix = "sealed:";

    /// <summary>Why <paramref name="name"/> cannot be a custom header; null when it can.</summary>
    public static string? NameProblem(string name)
    {
        if (name.Length == 0 || name.Length > MaxNameLength) return $"a header name must be 1 to {MaxNameLength} characters.";
        if (!name.All(IsTokenChar)) return "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only; no spaces, colons or line breaks).";
        // Frameworks that map headers to CGI-style names (PHP, Rack, WSGI) read X_Webhook_Signature as X-Webhook-Signature.
        var asDashes = name.Replace('_', '-');
        if (IsDispatcherName(asDashes))
            return "webhook-* and X-Webhook-* headers are set by the dispatcher (ids, timestamps and signatures) and cannot be replaced" +
                   (asDashes == name ? "." : " (receivers that read headers CGI-style take _ for -).");
        if (RefusedNames.Contains(asDashes))
            return "this header is set by HTTP itself or would change how the request is framed; it cannot be set" +
                   (asDashes == name ? "." : " (receivers that read headers CGI-style take _ for -).");
        return null;
    }

    /// <summary>The stored form (JSON text, credential values sealed); null for no headers.</summary>
    public static string? ToStored(IReadOnlyDictionary<string, string> headers, SecretSealer sealer) =>
        headers.Count == 0 ? null : JsonSerializer.Serialize(headers.ToDictionary(h => h.Key, h => IsCredential(h.Key) ? sealer.Seal(h.Value) : h.Value));

    /// <summary>
    /// The headers of a stored form, credential values opened; empty for null. Cached by the
    /// stored text: a claim costs a lookup, not a parse and a decryption.
    /// </summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured keys do not open.</exception>
    public static IReadOnlyDictionary<string, string> Open(string? stored, SecretSealer sealer)
    {
        if (string.IsNullOrEmpty(stored)) return Empty;
        if (Opened.TryGetValue(stored, out var cached)) return cached;
        var parsed = JsonSerializer.Deserialize<Dictionary<string, string>>(stored) ?? [];
        var opened = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        // Only credential values were sealed here (ToStored); any other value is sent as it was given.
        foreach (var (name, value) in parsed) opened[name] = IsCredential(name) ? sealer.Unseal(value) : value;
        if (Opened.Count >= MaxCached) Opened.Clear();
        Opened[stored] = opened;
        return opened;
    }

    /// <summary>The headers as the API shows them (credentials masked); null for none.</summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured keys do not open.</exception>
    public static IReadOnlyDictionary<string, string>? Masked(string? stored, SecretSealer sealer) =>
        string.IsNullOrEmpty(stored) ? null : Open(stored, sealer).ToDictionary(h => h.Key, h => Shown(h.Key, h.Value));

    private static readonly IReadOnlyDictionary<string, string> Empty = new Dictionary<string, string>();

    private static bool IsTokenChar(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9')
        or '!' or '#' or '$' or '%' or '&' or '\'' or '*' or '+' or '-' or '.' or '^' or '_' or '`' or '|' or '~';
}
