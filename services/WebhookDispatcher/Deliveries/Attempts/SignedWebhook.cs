using System.Globalization;
using System.Text;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Deliveries;

/// <summary>Builds the signed request of one attempt (deliveries and the test endpoint alike).</summary>
public static class SignedWebhook
{
    /// <summary>The secrets that sign now: the current one, and the previous one until its grace period ends.</summary>
    public static IReadOnlyList<string> ActiveSecrets(string secret, string? previousSecret, DateTimeOffset? previousExpiresAt, DateTimeOffset now) =>
        previousSecret is not null && previousExpiresAt > now ? [secret, previousSecret] : [secret];

    /// <summary>
    /// The request: the payload's UTF-8 bytes, <c>X-Webhook-Signature</c> with the current secret
    /// (<paramref name="secrets"/>[0]), <c>X-Webhook-Event</c>, <c>X-Webhook-Delivery</c> and the
    /// Standard Webhooks headers with one <c>v1</c> signature per secret; <c>webhook-timestamp</c>
    /// is <paramref name="now"/> in unix seconds.
    /// </summary>
    public static WebhookRequest Create(string url, string payload, string eventType, Guid deliveryId, Guid webhookId,
        IReadOnlyList<string> secrets, int timeoutSeconds, DateTimeOffset now) =>
        Create(url, Encoding.UTF8.GetBytes(payload), eventType, deliveryId, webhookId, secrets, timeoutSeconds, now);

    /// <summary>The request over a body already encoded (UTF-8 JSON), which it sends as it is and never modifies.</summary>
    public static WebhookRequest Create(string url, byte[] body, string eventType, Guid deliveryId, Guid webhookId,
        IReadOnlyList<string> secrets, int timeoutSeconds, DateTimeOffset now)
    {
        var timestamp = now.ToUnixTimeSeconds();
        var id = webhookId.ToString();
        var headers = new Dictionary<string, string>
        {
            ["X-Webhook-Signature"] = WebhookSigner.LegacySignature(secrets[0], body),
            ["X-Webhook-Event"] = eventType,
            ["X-Webhook-Delivery"] = deliveryId.ToString(),
            ["webhook-id"] = id,
            ["webhook-timestamp"] = timestamp.ToString(CultureInfo.InvariantCulture),
            ["webhook-signature"] = WebhookSigner.StandardSignature(id, timestamp, body, secrets),
        };
        return new WebhookRequest(url, body, headers, TimeSpan.FromSeconds(timeoutSeconds));
    }
}
