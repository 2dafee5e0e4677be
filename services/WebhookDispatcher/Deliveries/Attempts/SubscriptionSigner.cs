using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Builds an attempt's request from what is stored of its subscription: opens the sealed secrets,
/// private keys and credential headers (<see cref="SecretSealer"/>, cached, so a claim costs
/// lookups), picks those that sign now (the previous ones until their grace period ends) and the
/// signatures its <see cref="WebhookSubscription.SignatureScheme"/> asks for. Ed25519 costs only
/// subscriptions that chose it.
/// </summary>
public sealed class SubscriptionSigner(SecretSealer sealer)
{
    /// <summary>The request of a claimed delivery; <paramref name="now"/> is its timestamp and picks the active secrets.</summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured main keys do not open.</exception>
    public WebhookRequest Create(ClaimedDelivery d, DateTimeOffset now) => Create(d, d.Body, now);

    /// <summary>The request of a claimed delivery with <paramref name="body"/> in place of its payload (its template's rendering).</summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured main keys do not open.</exception>
    public WebhookRequest Create(ClaimedDelivery d, byte[] body, DateTimeOffset now) =>
        Create(d.Url, body, d.EventType, d.Id, d.EventId, new StoredSigning(d.Secret, d.PreviousSecret, d.PreviousSecretExpiresAt,
            d.SignatureScheme, d.SigningKey, d.PreviousSigningKey, d.Headers), d.TimeoutSeconds, now);

    /// <summary>The request of a subscription (the test send).</summary>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A sealed value the configured main keys do not open.</exception>
    public WebhookRequest Create(WebhookSubscription s, byte[] body, string eventType, Guid deliveryId, Guid webhookId, DateTimeOffset now) =>
        Create(s.Url, body, eventType, deliveryId, webhookId, new StoredSigning(s.Secret, s.PreviousSecret, s.PreviousSecretExpiresAt,
            s.SignatureScheme, s.SigningKey, s.PreviousSigningKey, s.Headers), s.TimeoutSeconds, now);

    private WebhookRequest Create(string url, byte[] body, string eventType, Guid deliveryId, Guid webhookId, StoredSigning stored,
        int timeoutSeconds, DateTimeOffset now)
    {
        var previousActive = stored.PreviousExpiresAt > now;
        IReadOnlyList<string> secrets = !SignatureSchemes.UsesHmac(stored.Scheme) ? []
            : previousActive && stored.PreviousSecret is { } previous ? [sealer.Unseal(stored.Secret), sealer.Unseal(previous)]
            : [sealer.Unseal(stored.Secret)];
        IReadOnlyList<string> keys = !SignatureSchemes.UsesEd25519(stored.Scheme) || stored.SigningKey is null ? []
            : previousActive && stored.PreviousSigningKey is { } previousKey ? [sealer.Unseal(stored.SigningKey), sealer.Unseal(previousKey)]
            : [sealer.Unseal(stored.SigningKey)];
        // An Ed25519 scheme whose key is missing (only by hand in the database) still signs with HMAC rather than not at all.
        if (secrets.Count == 0 && keys.Count == 0) secrets = [sealer.Unseal(stored.Secret)];
        return SignedWebhook.Create(url, body, eventType, deliveryId, webhookId, secrets, keys, SubscriptionHeaders.Open(stored.Headers, sealer),
            timeoutSeconds, now);
    }

    private readonly record struct StoredSigning(string Secret, string? PreviousSecret, DateTimeOffset? PreviousExpiresAt, string Scheme,
        string? SigningKey, string? PreviousSigningKey, string? Headers);
}
