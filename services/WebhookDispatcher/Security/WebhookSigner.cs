using System.Security.Cryptography;
using System.Text;

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
}
