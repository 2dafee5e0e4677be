namespace WebhookDispatcher.Deliveries;

/// <summary>The values of <c>webhook_delivery_attempts.outcome</c>.</summary>
public static class AttemptOutcome
{
    /// <summary>2xx answer.</summary>
    public const string Success = "success";

    /// <summary>A 4xx or 5xx answer (the status code is recorded).</summary>
    public const string HttpStatus = "http_status";

    /// <summary>A 3xx answer. Redirects are never followed (they could point anywhere), so it is a failure.</summary>
    public const string Redirect = "redirect";

    /// <summary>No complete answer within the subscription's timeout (headers and body together).</summary>
    public const string Timeout = "timeout";

    /// <summary>The receiver's host refused the TCP connection.</summary>
    public const string ConnectionRefused = "connection_refused";

    /// <summary>The receiver's host name did not resolve.</summary>
    public const string DnsFailure = "dns_failure";

    /// <summary>The TLS handshake failed (certificate or protocol).</summary>
    public const string TlsError = "tls_error";

    /// <summary>Any other network failure (reset, closed early, malformed answer).</summary>
    public const string ConnectionError = "connection_error";

    /// <summary>The URL resolved to a loopback, private or link-local address and private networks are not allowed.</summary>
    public const string BlockedAddress = "blocked_address";

    /// <summary>
    /// The dispatcher stopped (was killed) during this attempt <c>Delivery:MaxLostAttempts</c>
    /// times in a row: the delivery is failed rather than tried again forever. No answer is known.
    /// </summary>
    public const string Lost = "lost";

    /// <summary>
    /// The subscription's template failed to render the payload (a limit, an unknown filter, …):
    /// nothing was sent, and the delivery fails at once, since rendering is deterministic and would
    /// fail again. A manual retry after the template is fixed starts a new round.
    /// </summary>
    public const string TemplateError = "template_error";
}
