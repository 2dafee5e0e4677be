using System.ComponentModel.DataAnnotations;

namespace WebhookDispatcher.Deliveries;

/// <summary>Settings of the outbound webhook requests and the delivery endpoint (section <c>Delivery</c>).</summary>
public sealed class DeliveryOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Delivery";

    /// <summary>Bytes of a response body read at most; the rest is not read.</summary>
    public const int MaxResponseBytesRead = 64 * 1024;

    /// <summary>
    /// Allow URLs that resolve to loopback, private or link-local addresses. Off in production
    /// (SSRF protection); on for local development and tests whose receivers run on 127.0.0.1.
    /// </summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>Deliveries attempted at once by one process (1–1000).</summary>
    [Range(1, 1000)]
    public int ConcurrentMessageLimit { get; set; } = 32;

    /// <summary>Messages the broker sends ahead to one process (1–10000).</summary>
    [Range(1, 10000)]
    public int PrefetchCount { get; set; } = 64;

    /// <summary>The User-Agent header of webhook requests.</summary>
    [Required]
    public string UserAgent { get; set; } = "Notely-Webhooks/1.0";
}
