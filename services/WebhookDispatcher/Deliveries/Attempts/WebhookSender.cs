using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Microsoft.Extensions.Options;
using Polly.Timeout;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Deliveries;

/// <summary>What one webhook POST needs.</summary>
/// <param name="Url">Absolute http(s) URL.</param>
/// <param name="Body">The exact body bytes (UTF-8 JSON).</param>
/// <param name="Headers">Extra request headers (signatures, ids).</param>
/// <param name="Timeout">Total deadline: connect, send, response headers and body read.</param>
/// <param name="ContentType">The body's media type; null for the payload's <c>application/json; charset=utf-8</c> (a template names its own).</param>
public sealed record WebhookRequest(string Url, byte[] Body, IReadOnlyDictionary<string, string> Headers, TimeSpan Timeout, string? ContentType = null);

/// <summary>The outcome of one webhook POST.</summary>
/// <param name="Outcome">One of <see cref="AttemptOutcome"/>.</param>
/// <param name="StatusCode">HTTP status, when an answer arrived.</param>
/// <param name="ResponseExcerpt">At most 4096 characters of the response body.</param>
/// <param name="ErrorMessage">Why it failed, for people; null on success.</param>
/// <param name="Duration">Time from start to the end of the body read or the failure.</param>
/// <param name="RetryAfter">The Retry-After of a 429 or 503 answer (RFC 9110 §10.2.3), if any.</param>
public sealed record WebhookResponse(
    string Outcome, int? StatusCode, string? ResponseExcerpt, string? ErrorMessage, TimeSpan Duration, TimeSpan? RetryAfter)
{
    /// <summary>Whether the receiver answered 2xx.</summary>
    public bool IsSuccess => Outcome == AttemptOutcome.Success;
}

/// <summary>
/// POSTs one webhook through the <c>webhooks</c> HttpClient: no redirects followed, the
/// subscription's timeout as one deadline over headers and body (enforced by the client's
/// resilience pipeline), at most <see cref="DeliveryOptions.MaxResponseBytesRead"/> bytes read.
/// Never throws for receiver faults; they come back as a <see cref="WebhookResponse"/>.
/// </summary>
public sealed class WebhookSender(IHttpClientFactory clients, IOptions<DeliveryOptions> options)
{
    /// <summary>Name of the HttpClient registration.</summary>
    public const string ClientName = "webhooks";

    /// <summary>Per-request deadline read by the resilience pipeline's timeout strategy.</summary>
    public static readonly HttpRequestOptionsKey<TimeSpan> TimeoutKey = new("webhooks.attempt-timeout");

    /// <summary>Sends <paramref name="request"/> and classifies the outcome.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (shutdown).</exception>
    public async Task<WebhookResponse> SendAsync(WebhookRequest request, CancellationToken cancellationToken)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, request.Url);
        message.Content = new ByteArrayContent(request.Body);
        message.Content.Headers.ContentType = request.ContentType is null
            ? new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" }
            : MediaTypeHeaderValue.Parse(request.ContentType);
        message.Headers.UserAgent.ParseAdd(options.Value.UserAgent);
        // .NET keeps content headers (Content-Language, Content-MD5, Expires, Last-Modified …) apart
        // from request headers and refuses each in the other's collection: a custom one goes where it is taken.
        foreach (var (name, value) in request.Headers)
            if (!message.Headers.TryAddWithoutValidation(name, value))
                message.Content.Headers.TryAddWithoutValidation(name, value);
        message.Options.Set(TimeoutKey, request.Timeout);

        var started = Stopwatch.GetTimestamp();
        try
        {
            var client = clients.CreateClient(ClientName);
            using var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            // The pipeline has already read (at most 64 KiB of) the body inside the deadline.
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            var status = (int)response.StatusCode;
            var elapsed = Stopwatch.GetElapsedTime(started);
            // What the receiver sent back is stored and shown: never with the request's credentials in it.
            var excerpt = Excerpt(body, request.Headers);
            return status switch
            {
                >= 200 and < 300 => new(AttemptOutcome.Success, status, excerpt, null, elapsed, null),
                >= 300 and < 400 => new(AttemptOutcome.Redirect, status, excerpt,
                    Storable(EchoRedaction.Redact($"HTTP {status}: redirects are not followed (Location: {response.Headers.Location})",
                        request.Headers)!, MaxErrorChars), elapsed, null),
                _ => new(AttemptOutcome.HttpStatus, status, excerpt,
                    Storable(EchoRedaction.Redact($"HTTP {status} {response.ReasonPhrase}".TrimEnd(), request.Headers)!, MaxErrorChars),
                    elapsed, status is 429 or 503 ? RetryAfter(response.Headers.RetryAfter) : null),
            };
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            var (outcome, text) = Classify(ex, request.Timeout);
            return new(outcome, null, null, Storable(text, MaxErrorChars), Stopwatch.GetElapsedTime(started), null);
        }
    }

    private static (string Outcome, string Message) Classify(Exception ex, TimeSpan timeout)
    {
        if (ex is TimeoutRejectedException or TaskCanceledException or OperationCanceledException)
            return (AttemptOutcome.Timeout, $"No complete answer within {timeout.TotalSeconds:0.#} s");
        for (var e = ex; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case BlockedAddressException blocked:
                    return (AttemptOutcome.BlockedAddress, blocked.Message);
                case SocketException { SocketErrorCode: SocketError.ConnectionRefused }:
                    return (AttemptOutcome.ConnectionRefused, "Connection refused");
                case SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain }:
                    return (AttemptOutcome.DnsFailure, "Host name did not resolve");
                case AuthenticationException:
                    return (AttemptOutcome.TlsError, "TLS handshake failed: " + e.Message);
                case HttpRequestException { HttpRequestError: HttpRequestError.NameResolutionError }:
                    return (AttemptOutcome.DnsFailure, "Host name did not resolve");
                case HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }:
                    return (AttemptOutcome.TlsError, "TLS handshake failed");
            }
        }
        return (AttemptOutcome.ConnectionError, ex.GetBaseException().Message);
    }

    private static TimeSpan? RetryAfter(RetryConditionHeaderValue? header) => header switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date - DateTimeOffset.UtcNow is { } wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
        _ => null,
    };

    /// <summary>Longest stored error message, in characters (the column's size).</summary>
    public const int MaxErrorChars = 1024;

    private static string? Excerpt(byte[] body, IReadOnlyDictionary<string, string> headers)
    {
        if (body.Length == 0) return null;
        // Decoding at most 4 bytes per char keeps this bounded before truncating to characters;
        // credentials are taken out before the cut, so none is left half in the excerpt.
        var text = Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, WebhookDelivery.MaxStoredResponseChars * 4));
        return Storable(EchoRedaction.Redact(text, headers)!, WebhookDelivery.MaxStoredResponseChars);
    }

    /// <summary>
    /// Text a receiver controls, made storable in a PostgreSQL text column of <paramref name="maxChars"/>:
    /// NUL characters (which PostgreSQL text cannot hold) become U+FFFD, and truncation never
    /// splits a surrogate pair (which UTF-8 cannot encode).
    /// </summary>
    internal static string Storable(string text, int maxChars)
    {
        text = text.Replace('\0', '\uFFFD');
        if (text.Length <= maxChars) return text;
        var cut = char.IsHighSurrogate(text[maxChars - 1]) ? maxChars - 1 : maxChars;
        return text[..cut];
    }
}

/// <summary>
/// Innermost handler of the <c>webhooks</c> client: reads at most
/// <see cref="DeliveryOptions.MaxResponseBytesRead"/> bytes of the response body while the
/// resilience pipeline's deadline still runs, so a slow or endless body counts as a timeout.
/// </summary>
internal sealed class BoundedResponseBodyHandler : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        try
        {
            var buffer = new byte[DeliveryOptions.MaxResponseBytesRead];
            var read = 0;
            await using (var stream = await response.Content.ReadAsStreamAsync(cancellationToken))
            {
                int n;
                while (read < buffer.Length && (n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken)) > 0)
                    read += n;
            }
            var bounded = new ByteArrayContent(buffer, 0, read);
            foreach (var header in response.Content.Headers.Where(h => h.Key != "Content-Length"))
                bounded.Headers.TryAddWithoutValidation(header.Key, header.Value);
            response.Content.Dispose();
            response.Content = bounded;
            return response;
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }
}
