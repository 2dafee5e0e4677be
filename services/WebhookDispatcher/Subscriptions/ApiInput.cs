using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// Reads request input so that every malformed request gets a 4xx with RFC 9457 problem details,
/// never a 500: the JSON body is parsed here (UTF-8 only, RFC 8259; bounded depth; duplicate keys
/// refused, since "last one wins" would let a bad value hide behind a good one).
/// </summary>
public static class ApiInput
{
    /// <summary>Largest accepted request body, in bytes of content (after any chunked transfer coding is removed).</summary>
    public const long MaxBodyBytes = 64 * 1024;

    /// <summary>
    /// The server's own limit on a body endpoint, in bytes on the wire: Kestrel counts the chunk
    /// framing of a chunked body too, so its limit sits far enough above <see cref="MaxBodyBytes"/>
    /// for content sent in 1-byte chunks (6 bytes on the wire each), and only bounds what is read
    /// before <see cref="ReadJsonAsync"/> answers 413 on the content itself.
    /// </summary>
    public const long MaxWireBodyBytes = 8 * MaxBodyBytes;

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 16, AllowDuplicateProperties = false };

    /// <summary>
    /// Parses the body as one JSON value; on failure returns the problem to answer with: 415 for a
    /// body that is not UTF-8 JSON or is compressed, 413 for one over <see cref="MaxBodyBytes"/>,
    /// 400 naming <c>body</c> for one that does not parse.
    /// </summary>
    public static async Task<(JsonDocument? Document, ProblemHttpResult? Refused, ValidationProblem? Invalid)> ReadJsonAsync(
        HttpRequest request, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType)
            || !(mediaType.MediaType is "application/json" || mediaType.MediaType?.EndsWith("+json", StringComparison.OrdinalIgnoreCase) == true))
            return (null, Unsupported("Send the body as application/json."), null);
        if (mediaType.CharSet is { } charset && !charset.Trim('"').Equals("utf-8", StringComparison.OrdinalIgnoreCase))
            return (null, Unsupported("JSON must be UTF-8 (RFC 8259); omit the charset or use charset=utf-8."), null);
        if (!string.IsNullOrEmpty(request.Headers.ContentEncoding))
            return (null, Unsupported("Compressed request bodies are not accepted."), null);
        if (request.ContentLength > MaxBodyBytes) return (null, TooLarge(), null);

        // Counted here on the content, not by the server on the wire (see MaxWireBodyBytes).
        var body = new MemoryStream((int)(request.ContentLength ?? 4096));
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                if (body.Length + read > MaxBodyBytes) return (null, TooLarge(), null);
                body.Write(buffer, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.GetBuffer().AsMemory(0, (int)body.Length), DocumentOptions);
        }
        catch (JsonException ex)
        {
            return (null, null, Invalid("body", $"Not valid JSON: {ex.Message}"));
        }
        catch (InvalidOperationException)
        {
            // Refusing duplicate keys makes the parser decode every property name.
            return (null, null, Invalid("body",
                "A property name is not valid Unicode: bytes that are not UTF-8, or a lone surrogate escape (\\ud800 to \\udfff without its pair)."));
        }
        // The parser checks neither escapes nor UTF-8 inside strings; reading such a string later
        // throws wherever it happens to be read, so every string is checked here, once.
        if (FirstNotUnicode(document.RootElement, "") is { } bad)
        {
            document.Dispose();
            return (null, null, Invalid(bad.Field, bad.Message));
        }
        return (document, null, null);
    }

    /// <summary>
    /// The first string value or property name in <paramref name="element"/> that is not valid
    /// Unicode (RFC 8259 section 8.1: UTF-8, and no lone surrogate escape such as <c>\ud800</c>)
    /// or holds U+0000 (which PostgreSQL's text and jsonb cannot store),
    /// with the field it is in (<c>filter</c>, <c>headers.X-Key</c>, <c>event_types[1]</c>;
    /// <c>body</c> at the top), or null when every one is.
    /// </summary>
    internal static (string Field, string Message)? FirstNotUnicode(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return IsUnicode(JsonMarshal.GetRawUtf8Value(element), out var why) ? null : (Field(path), why);
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in element.EnumerateArray())
                    if (FirstNotUnicode(item, $"{Field(path)}[{i++}]") is { } bad) return bad;
                return null;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (!IsUnicode(JsonMarshal.GetRawUtf8PropertyName(property), out var nameWhy))
                        return (Field(path), $"A property name is not valid Unicode. {nameWhy}");
                    var name = property.Name;
                    if (FirstNotUnicode(property.Value, path.Length == 0 ? name : $"{path}.{name}") is { } bad) return bad;
                }
                return null;
            default:
                return null;
        }

        static string Field(string path) => path.Length == 0 ? "body" : path;
    }

    /// <summary>Whether a string token's raw bytes (escapes not yet decoded) are UTF-8 and decode to valid UTF-16 without U+0000.</summary>
    private static bool IsUnicode(ReadOnlySpan<byte> raw, out string why)
    {
        if (!System.Text.Unicode.Utf8.IsValid(raw))
        {
            why = "Contains bytes that are not UTF-8; send JSON as UTF-8 (RFC 8259).";
            return false;
        }
        // Only escapes can make a lone surrogate out of valid UTF-8: decode them and check.
        if (raw.IndexOf((byte)'\\') >= 0)
        {
            byte[] token;
            if (raw.Length >= 2 && raw[0] == (byte)'"') token = raw.ToArray(); // a value, with its quotes
            else
            {
                token = new byte[raw.Length + 2];
                token[0] = token[^1] = (byte)'"';
                raw.CopyTo(token.AsSpan(1));
            }
            try
            {
                var reader = new Utf8JsonReader(token);
                reader.Read();
                // U+0000 is valid JSON, but no text PostgreSQL stores can hold it (SQLSTATE 22P05):
                // refused here once rather than wherever a field happens to reach the database.
                if (reader.GetString()!.Contains('\0', StringComparison.Ordinal))
                {
                    why = "Contains U+0000 (\\u0000), which no stored text can hold.";
                    return false;
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or JsonException)
            {
                why = "Contains a lone surrogate escape (\\ud800 to \\udfff without its pair), which is not a Unicode character.";
                return false;
            }
        }
        why = "";
        return true;
    }

    private static ProblemHttpResult Unsupported(string detail) =>
        TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type", detail: detail);

    private static ProblemHttpResult TooLarge() =>
        TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Request body too large",
            detail: $"The body may be at most {MaxBodyBytes} bytes.");

    /// <summary>A 400 validation problem naming one field.</summary>
    public static ValidationProblem Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] });

    /// <summary>Parses query values given as strings, collecting an error per bad parameter.</summary>
    public sealed class Query
    {
        /// <summary>Errors by parameter name.</summary>
        public Dictionary<string, string[]> Errors { get; } = [];

        /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="fallback"/> when absent.</summary>
        public int Integer(string name, string? value, int fallback, int min, int max)
        {
            if (value is null) return fallback;
            if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max)
                return number;
            Errors[name] = [$"Must be a whole number from {min} to {max}."];
            return fallback;
        }

        /// <summary><c>true</c> or <c>false</c>, or null when absent.</summary>
        public bool? Boolean(string name, string? value)
        {
            switch (value)
            {
                case null: return null;
                case "true": return true;
                case "false": return false;
                default:
                    Errors[name] = ["Must be true or false."];
                    return null;
            }
        }

        /// <summary>
        /// A point in time given with its offset (RFC 3339, e.g. <c>2026-12-01T10:00:00Z</c>), in UTC
        /// at the database's precision; null when absent. A time without an offset is refused rather
        /// than read in some zone.
        /// </summary>
        public DateTimeOffset? Timestamp(string name, string? value)
        {
            if (value is null) return null;
            if (value.Length <= 64 && (value.EndsWith('Z') || value.EndsWith('z') || System.Text.RegularExpressions.Regex.IsMatch(value, @"[+-]\d{2}:\d{2}$"))
                && DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
                return time.ToUniversalTime().AddTicks(-(time.Ticks % 10));
            Errors[name] = ["Must be a time with its offset (RFC 3339), e.g. 2026-12-01T10:00:00Z."];
            return null;
        }

        /// <summary>One of <paramref name="allowed"/>, or null when absent.</summary>
        public string? OneOf(string name, string? value, IEnumerable<string> allowed, string hint)
        {
            if (value is null || allowed.Contains(value)) return value;
            Errors[name] = [hint];
            return null;
        }
    }
}

/// <summary>
/// Maps the framework's own rejections (body too large, unreadable request) to problem details
/// with their status code instead of a 500.
/// </summary>
internal sealed class BadRequestExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not BadHttpRequestException bad) return false;
        httpContext.Response.StatusCode = bad.StatusCode;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails = { Status = bad.StatusCode, Title = "The request could not be read", Detail = bad.Message },
        });
    }
}
