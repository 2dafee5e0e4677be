using System.Text.Encodings.Web;
using System.Text.Json;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Security;

/// <summary>
/// Takes secrets out of text a receiver sent back (a response excerpt, a reason phrase, a
/// redirect's <c>Location</c>) before people read it: the request's credential header values
/// before the text is stored (users and operators read the history), and the part of a
/// subscription's URL that operators are not shown (<see cref="Portal.OperatorApi.OperatorUrl"/>)
/// when operators read it. Each secret is replaced by <see cref="SubscriptionHeaders.MaskSuffix"/>
/// as written and as the common encoders write it (JSON with <c>\/</c> or <c>\u002B</c> escapes,
/// URL encoding), wherever it stands as a whole: not when a letter or digit touches it on either
/// side, so that a short value (<c>json</c>, <c>1234</c>) is not cut out of ordinary words.
/// </summary>
public static class EchoRedaction
{
    /// <summary>Shortest secret replaced (shorter ones would mangle ordinary text).</summary>
    public const int MinLength = 4;

    /// <summary>Shortest space-separated part of a credential value replaced on its own (not a scheme such as <c>Bearer</c>).</summary>
    public const int MinPartLength = 8;

    /// <summary>
    /// <paramref name="text"/> with every credential value among <paramref name="headers"/> (the
    /// request's headers; the dispatcher's own <c>webhook-*</c> and <c>X-Webhook-*</c> are not
    /// credentials, <see cref="SubscriptionHeaders.IsCredential"/>) replaced: the value whole, and
    /// each of its space-separated parts of <see cref="MinPartLength"/> characters or more (the
    /// token of <c>Bearer …</c>). Null stays null.
    /// </summary>
    public static string? Redact(string? text, IReadOnlyDictionary<string, string> headers)
    {
        if (string.IsNullOrEmpty(text)) return text;
        foreach (var (name, value) in headers)
        {
            // The dispatcher's own headers first: every attempt has them, and they are no credentials.
            if (SubscriptionHeaders.IsDispatcherName(name) || value.Length < MinLength || !SubscriptionHeaders.IsCredential(name)) continue;
            text = ReplaceEverySpelling(text, value);
            foreach (var part in value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                if (part.Length >= MinPartLength && part.Length < value.Length)
                    text = ReplaceEverySpelling(text, part);
        }
        return text;
    }

    /// <summary>
    /// <paramref name="text"/> with what operators are not shown of <paramref name="url"/> replaced:
    /// the path after <paramref name="shownSegments"/> segments, the query, each of those segments
    /// and each query value of <see cref="MinLength"/> characters or more. Null stays null.
    /// </summary>
    public static string? RedactUrl(string? text, string url, int shownSegments)
    {
        if (string.IsNullOrEmpty(text) || !Uri.TryCreate(url, UriKind.Absolute, out var uri)) return text;
        var segments = uri.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var hidden = segments.Skip(shownSegments).ToList();
        var query = uri.Query.TrimStart('?');
        if (hidden.Count > 0) text = ReplaceEverySpelling(text, "/" + string.Join('/', hidden) + uri.Query);
        if (query.Length > 0) text = ReplaceEverySpelling(text, query);
        foreach (var secret in hidden.Select(Uri.UnescapeDataString)
                     .Concat(query.Split('&').Select(p => Uri.UnescapeDataString(p[(p.IndexOf('=') + 1)..]))))
            if (secret.Length >= MinLength) text = ReplaceEverySpelling(text, secret);
        return text;
    }

    private static readonly JavaScriptEncoder Relaxed = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    /// <summary>Replaces <paramref name="secret"/> as written, JSON-escaped (System.Text.Json's default and relaxed encoders, PHP's <c>\/</c>) and URL-encoded.</summary>
    private static string ReplaceEverySpelling(string text, string secret)
    {
        var spellings = new HashSet<string>(StringComparer.Ordinal)
        {
            secret,
            JsonEncodedText.Encode(secret).Value,
            JsonEncodedText.Encode(secret, Relaxed).Value,
            JsonEncodedText.Encode(secret, Relaxed).Value.Replace("/", "\\/", StringComparison.Ordinal),
            Uri.EscapeDataString(secret),
        };
        foreach (var spelling in spellings.OrderByDescending(s => s.Length))
            text = ReplaceWhole(text, spelling);
        return text;
    }

    /// <summary>Every occurrence of <paramref name="needle"/> in <paramref name="text"/> that no letter or digit touches, replaced.</summary>
    private static string ReplaceWhole(string text, string needle)
    {
        var at = text.IndexOf(needle, StringComparison.Ordinal);
        if (at < 0) return text;
        var result = new System.Text.StringBuilder(text.Length);
        var from = 0;
        while (at >= 0)
        {
            var end = at + needle.Length;
            var touched = (at > 0 && char.IsLetterOrDigit(text[at - 1]) && char.IsLetterOrDigit(needle[0]))
                          || (end < text.Length && char.IsLetterOrDigit(text[end]) && char.IsLetterOrDigit(needle[^1]));
            if (!touched)
            {
                result.Append(text, from, at - from).Append(SubscriptionHeaders.MaskSuffix);
                from = end;
            }
            at = text.IndexOf(needle, touched ? at + 1 : end, StringComparison.Ordinal);
        }
        return result.Append(text, from, text.Length - from).ToString();
    }
}
