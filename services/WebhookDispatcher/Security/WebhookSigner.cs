using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Key = NSec.Cryptography.Key;
using KeyBlobFormat = NSec.Cryptography.KeyBlobFormat;
using SignatureAlgorithm = NSec.Cryptography.SignatureAlgorithm;

namespace WebhookDispatcher.Security;

/// <summary>
/// Signs webhook bodies two ways at once, so receivers written for either keep working:
/// <list type="bullet">
/// <item><c>X-Webhook-Signature: sha256=&lt;hex&gt;</c> — HMAC-SHA256 over the raw body, keyed with the
/// UTF-8 bytes of the secret (the original Notely spec; the same scheme as GitHub's
/// <c>X-Hub-Signature-256</c>).</item>
/// <item><c>webhook-signature: v1,&lt;base64&gt;</c> — Standard Webhooks: HMAC-SHA256 over
/// <c>"{webhook-id}.{webhook-timestamp}.{body}"</c>, keyed with the base64-decoded part of a
/// <c>whsec_</c> secret (or the secret's UTF-8 bytes when it lacks that prefix). During a secret
/// rotation one <c>v1,</c> entry per valid secret, separated by spaces.</item>
/// <item><c>webhook-signature: v1a,&lt;base64&gt;</c> — Standard Webhooks asymmetric: an Ed25519
/// signature over the same <c>"{webhook-id}.{webhook-timestamp}.{body}"</c>, for subscriptions
/// that opt in (<see cref="SignatureSchemes"/>); receivers verify it with the public key
/// <c>whpk_&lt;base64 of 32 bytes&gt;</c> and hold no secret.</item>
/// </list>
/// </summary>
public static class WebhookSigner
{
    /// <summary>The prefix of secrets in the Standard Webhooks form.</summary>
    public const string StandardSecretPrefix = "whsec_";

    /// <summary>The value of <c>X-Webhook-Signature</c>: <c>sha256=</c> and 64 lower-case hex digits.</summary>
    /// <param name="secret">The subscription secret; its UTF-8 bytes are the HMAC key.</param>
    /// <param name="body">The exact bytes sent as the request body.</param>
    public static string LegacySignature(string secret, ReadOnlySpan<byte> body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));

    /// <summary>
    /// The value of <c>webhook-signature</c> (Standard Webhooks v1): one <c>v1,&lt;base64&gt;</c>
    /// per secret, space-separated, in the order given.
    /// </summary>
    /// <param name="webhookId">The <c>webhook-id</c> header value.</param>
    /// <param name="timestamp">The <c>webhook-timestamp</c> header value, unix seconds.</param>
    /// <param name="body">The exact bytes sent as the request body.</param>
    /// <param name="secrets">One or more secrets (current first during a rotation).</param>
    /// <exception cref="FormatException">A <c>whsec_</c> secret whose remainder is not base64.</exception>
    public static string StandardSignature(string webhookId, long timestamp, ReadOnlySpan<byte> body, params IEnumerable<string> secrets)
    {
        // "{id}.{timestamp}." then the body, hashed in two steps: the body is never copied (a
        // payload near the cap would otherwise cost a large-object allocation per attempt).
        var prefix = Encoding.UTF8.GetBytes($"{webhookId}.{timestamp}.");
        Span<byte> mac = stackalloc byte[HMACSHA256.HashSizeInBytes];
        var signature = new StringBuilder(64);
        foreach (var secret in secrets)
        {
            using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, StandardKey(secret));
            hmac.AppendData(prefix);
            hmac.AppendData(body);
            hmac.GetHashAndReset(mac);
            if (signature.Length > 0) signature.Append(' ');
            signature.Append("v1,").Append(Convert.ToBase64String(mac));
        }
        return signature.ToString();
    }

    /// <summary>The HMAC key Standard Webhooks derives from a secret.</summary>
    /// <exception cref="FormatException">A <c>whsec_</c> secret whose remainder is not base64.</exception>
    public static byte[] StandardKey(string secret) =>
        secret.StartsWith(StandardSecretPrefix, StringComparison.Ordinal)
            ? Convert.FromBase64String(secret[StandardSecretPrefix.Length..])
            : Encoding.UTF8.GetBytes(secret);

    /// <summary>A new secret in the Standard Webhooks form: <c>whsec_</c> and 32 random bytes in base64.</summary>
    public static string NewSecret() => StandardSecretPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>The prefix of an Ed25519 private key (Standard Webhooks: <c>whsk_</c>); here followed by the base64 of the 32-byte seed.</summary>
    public const string PrivateKeyPrefix = "whsk_";

    /// <summary>The prefix of an Ed25519 public key (Standard Webhooks: <c>whpk_</c>), followed by the base64 of the 32-byte key.</summary>
    public const string PublicKeyPrefix = "whpk_";

    private const int MaxCachedKeys = 100_000;
    private static readonly ConcurrentDictionary<string, Key> Ed25519Keys = new(StringComparer.Ordinal);

    /// <summary>A new Ed25519 private key: <c>whsk_</c> and a random 32-byte seed in base64. It stays in the service (sealed at rest).</summary>
    public static string NewPrivateKey() => PrivateKeyPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>The public key of <paramref name="privateKey"/>: <c>whpk_</c> and the base64 of its 32 bytes.</summary>
    /// <exception cref="FormatException">Not a <c>whsk_</c> key of a 32-byte seed.</exception>
    public static string PublicKey(string privateKey) =>
        PublicKeyPrefix + Convert.ToBase64String(Ed25519Key(privateKey).PublicKey.Export(KeyBlobFormat.RawPublicKey));

    /// <summary>
    /// The <c>v1a</c> entries of <c>webhook-signature</c> (Standard Webhooks asymmetric): one
    /// <c>v1a,&lt;base64 Ed25519 signature&gt;</c> per private key over <c>"{id}.{timestamp}.{body}"</c>,
    /// space-separated, in the order given.
    /// </summary>
    /// <param name="webhookId">The <c>webhook-id</c> header value.</param>
    /// <param name="timestamp">The <c>webhook-timestamp</c> header value, unix seconds.</param>
    /// <param name="body">The exact bytes sent as the request body.</param>
    /// <param name="privateKeys">One or more <c>whsk_</c> keys (current first during a rotation).</param>
    /// <exception cref="FormatException">A key that is not a <c>whsk_</c> key of a 32-byte seed.</exception>
    public static string AsymmetricSignature(string webhookId, long timestamp, ReadOnlySpan<byte> body, params IEnumerable<string> privateKeys)
    {
        // Ed25519 hashes its message twice, so it needs it whole: prefix and body in one buffer.
        var prefix = Encoding.UTF8.GetBytes($"{webhookId}.{timestamp}.");
        var message = new byte[prefix.Length + body.Length];
        prefix.CopyTo(message, 0);
        body.CopyTo(message.AsSpan(prefix.Length));
        var signature = new StringBuilder(92);
        foreach (var privateKey in privateKeys)
        {
            if (signature.Length > 0) signature.Append(' ');
            signature.Append("v1a,").Append(Convert.ToBase64String(SignatureAlgorithm.Ed25519.Sign(Ed25519Key(privateKey), message)));
        }
        return signature.ToString();
    }

    /// <summary>The libsodium key of a <c>whsk_</c> key, imported once and kept (importing derives the public key).</summary>
    private static Key Ed25519Key(string privateKey)
    {
        if (Ed25519Keys.TryGetValue(privateKey, out var key)) return key;
        if (!privateKey.StartsWith(PrivateKeyPrefix, StringComparison.Ordinal)) throw new FormatException("An Ed25519 private key must start with whsk_.");
        var seed = Convert.FromBase64String(privateKey[PrivateKeyPrefix.Length..]);
        if (seed.Length != 32) throw new FormatException("An Ed25519 private key must hold a 32-byte seed.");
        key = Key.Import(SignatureAlgorithm.Ed25519, seed, KeyBlobFormat.RawPrivateKey);
        // Keys of deleted or rotated subscriptions stay until the cache is full; then it starts over
        // (the keys it drops are freed by their finalizers, as nothing else holds them).
        if (Ed25519Keys.Count >= MaxCachedKeys) Ed25519Keys.Clear();
        return Ed25519Keys.GetOrAdd(privateKey, key);
    }
}

/// <summary>
/// The values of a subscription's <c>signature_scheme</c>: which signatures its requests carry.
/// </summary>
public static class SignatureSchemes
{
    /// <summary>HMAC-SHA256 only (the default): <c>X-Webhook-Signature</c> and <c>webhook-signature: v1,…</c>.</summary>
    public const string Hmac = "hmac";

    /// <summary>Ed25519 only: <c>webhook-signature: v1a,…</c>, and no HMAC header (the receiver needs only the public key).</summary>
    public const string Ed25519 = "ed25519";

    /// <summary>Both, for a receiver moving from one to the other: every HMAC header, and <c>v1,</c> and <c>v1a,</c> entries in <c>webhook-signature</c>.</summary>
    public const string Both = "both";

    /// <summary>All values.</summary>
    public static readonly IReadOnlyList<string> All = [Hmac, Ed25519, Both];

    /// <summary>Whether the scheme signs with HMAC.</summary>
    public static bool UsesHmac(string scheme) => scheme != Ed25519;

    /// <summary>Whether the scheme signs with Ed25519.</summary>
    public static bool UsesEd25519(string scheme) => scheme is Ed25519 or Both;
}
