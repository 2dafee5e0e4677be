using System.Security.Cryptography;
using System.Text;
using NSec.Cryptography;

namespace Notely.WebhookDemo;

/// <summary>
/// How a receiver verifies a Notely webhook — the code docs/webhooks.md shows. It uses nothing
/// from the dispatcher: only the secret, the headers and the raw body bytes as received (verify
/// before parsing JSON; re-serialised JSON would not match).
/// </summary>
public static class WebhookVerifier
{
    /// <summary>Largest accepted distance between <c>webhook-timestamp</c> and now (Standard Webhooks: 5 minutes).</summary>
    public static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    /// <summary>Checks <c>X-Webhook-Signature: sha256=&lt;hex&gt;</c>: HMAC-SHA256 of the body keyed with the secret's UTF-8 bytes.</summary>
    public static bool VerifyLegacy(string secret, byte[] body, string? signatureHeader)
    {
        if (signatureHeader is null) return false;
        var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signatureHeader));
    }

    /// <summary>
    /// Checks the Standard Webhooks headers: <c>webhook-signature</c> holds one or more
    /// <c>v1,&lt;base64&gt;</c> entries (several during a secret rotation); one must equal
    /// HMAC-SHA256 over <c>"{webhook-id}.{webhook-timestamp}.{body}"</c> keyed with the base64 part
    /// of the <c>whsec_</c> secret, and the timestamp must be within <see cref="Tolerance"/> of now.
    /// </summary>
    public static bool VerifyStandard(string secret, string? webhookId, string? timestamp, string? signatureHeader, byte[] body,
        DateTimeOffset now)
    {
        if (webhookId is null || signatureHeader is null || !IsRecent(timestamp, now)) return false;
        var key = Convert.FromBase64String(secret.StartsWith("whsec_", StringComparison.Ordinal) ? secret[6..] : secret);
        var signed = Encoding.UTF8.GetBytes($"{webhookId}.{timestamp}.").Concat(body).ToArray();
        var expected = Encoding.ASCII.GetBytes("v1," + Convert.ToBase64String(HMACSHA256.HashData(key, signed)));
        return signatureHeader.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Any(candidate => CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(candidate), expected));
    }

    /// <summary>
    /// Checks the Standard Webhooks asymmetric signature (<c>v1a</c>, for webhooks whose
    /// <c>signature_scheme</c> is <c>ed25519</c> or <c>both</c>): one <c>v1a,&lt;base64&gt;</c> entry of
    /// <c>webhook-signature</c> must be the Ed25519 signature of <c>"{webhook-id}.{webhook-timestamp}.{body}"</c>
    /// by the webhook's public key <c>whpk_&lt;base64 of 32 bytes&gt;</c>, and the timestamp within
    /// <see cref="Tolerance"/> of now. Uses NSec.Cryptography (libsodium); .NET has no Ed25519 of its own.
    /// </summary>
    public static bool VerifyAsymmetric(string publicKey, string? webhookId, string? timestamp, string? signatureHeader, byte[] body,
        DateTimeOffset now)
    {
        if (webhookId is null || signatureHeader is null || !IsRecent(timestamp, now)) return false;
        if (!publicKey.StartsWith("whpk_", StringComparison.Ordinal)) return false;
        var algorithm = SignatureAlgorithm.Ed25519;
        if (!PublicKey.TryImport(algorithm, Convert.FromBase64String(publicKey[5..]), KeyBlobFormat.RawPublicKey, out var key) || key is null)
            return false;
        var signed = Encoding.UTF8.GetBytes($"{webhookId}.{timestamp}.").Concat(body).ToArray();
        foreach (var entry in signatureHeader.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!entry.StartsWith("v1a,", StringComparison.Ordinal)) continue;
            var signature = new byte[64];
            if (Convert.TryFromBase64String(entry[4..], signature, out var written) && written == 64 && algorithm.Verify(key, signed, signature))
                return true;
        }
        return false;
    }

    /// <summary>
    /// Whether <paramref name="timestamp"/> (Unix seconds, as sent in <c>webhook-timestamp</c>) is
    /// within <see cref="Tolerance"/> of <paramref name="now"/>. Compared as numbers, so a value far
    /// out of range (a forged header) is simply not recent, never an exception.
    /// </summary>
    public static bool IsRecent(string? timestamp, DateTimeOffset now)
    {
        if (timestamp is null || timestamp.Length is 0 or > 12 || !timestamp.All(char.IsAsciiDigit)) return false;
        var seconds = long.Parse(timestamp, System.Globalization.CultureInfo.InvariantCulture);
        var nowSeconds = now.ToUnixTimeSeconds();
        return seconds >= nowSeconds - (long)Tolerance.TotalSeconds && seconds <= nowSeconds + (long)Tolerance.TotalSeconds;
    }
}
