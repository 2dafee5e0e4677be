using System.Globalization;
using System.Text;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Deliveries;

/// <summary>Builds the signed request of one attempt (deliveries and the test endpoint alike).</summary>
public static class SignedWebhook
{
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
        IReadOnlyList<string> secrets, int timeoutSeconds, DateTimeOffset now) =>
        Create(url, body, eventType, deliveryId, webhookId, secrets, [], NoHeaders, timeoutSeconds, now);

    /// <summary>
    /// The request with every option: <paramref name="customHeaders"/> first (the subscription's own,
    /// already checked against <see cref="Subscriptions.SubscriptionHeaders.NameProblem"/>), then the
    /// dispatcher's. With no <paramref name="secrets"/> there is no HMAC (<c>X-Webhook-Signature</c>
    /// and the <c>v1,</c> entries are left out); each of <paramref name="privateKeys"/> adds a
    /// <c>v1a,</c> entry after the <c>v1,</c> ones.
    /// </summary>
    /// <exception cref="ArgumentException">Neither a secret nor a private key: the request would carry no signature.</exception>
    public static WebhookRequest Create(string url, byte[] body, string eventType, Guid deliveryId, Guid webhookId,
        IReadOnlyList<string> secrets, IReadOnlyList<string> privateKeys, IReadOnlyDictionary<string, string> customHeaders,
        int timeoutSeconds, DateTimeOffset now)
    {
        if (secrets.Count == 0 && privateKeys.Count == 0) throw new ArgumentException("A webhook needs at least one secret or private key to sign it.");
        var timestamp = now.ToUnixTimeSeconds();
        var id = webhookId.ToString();
        var headers = new Dictionary<string, string>(customHeaders.Count + 6, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in customHeaders) headers[name] = value;
        if (secrets.Count > 0) headers["X-Webhook-Signature"] = WebhookSigner.LegacySignature(secrets[0], body);
        headers["X-Webhook-Event"] = eventType;
        headers["X-Webhook-Delivery"] = deliveryId.ToString();
        headers["webhook-id"] = id;
        headers["webhook-timestamp"] = timestamp.ToString(CultureInfo.InvariantCulture);
        var signature = secrets.Count > 0 ? WebhookSigner.StandardSignature(id, timestamp, body, secrets) : "";
        if (privateKeys.Count > 0)
            signature = (signature.Length > 0 ? signature + " " : "") + WebhookSigner.AsymmetricSignature(id, timestamp, body, privateKeys);
        headers["webhook-signature"] = signature;
        return new WebhookRequest(url, body, headers, TimeSpan.FromSeconds(timeoutSeconds));
    }

    private static readonly IReadOnlyDictionary<string, string> NoHeaders = new Dictionary<string, string>();
}
