using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
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
        try
        {
            return (JsonDocument.Parse(body.GetBuffer().AsMemory(0, (int)body.Length), DocumentOptions), null, null);
        }
        catch (JsonException ex)
        {
            return (null, null, Invalid("body", $"Not valid JSON: {ex.Message}"));
        }
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
