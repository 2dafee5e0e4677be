using System.Security.Cryptography;
using System.Text;

namespace WebhookDispatcher.Portal;

/// <summary>
/// The portal's two bearer secrets: the single-use link token (<c>wdpl_</c>, carried in the
/// link's fragment) and the session token (<c>wdps_</c>, held in the page's memory). Each is 32
/// random bytes in base64url; only their SHA-256 is stored, so a copy of the database opens nothing.
/// </summary>
public static class PortalTokens
{
    /// <summary>Prefix of a link token.</summary>
    public const string LinkPrefix = "wdpl_";

    /// <summary>Prefix of a session token.</summary>
    public const string SessionPrefix = "wdps_";

    /// <summary>Length of a token: the prefix and 43 base64url characters.</summary>
    public const int Length = 5 + 43;

    /// <summary>A new token with <paramref name="prefix"/>.</summary>
    public static string New(string prefix) =>
        prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>Whether <paramref name="token"/> has the shape of a token with <paramref name="prefix"/> (it may still be unknown).</summary>
    public static bool IsWellFormed(string? token, string prefix) =>
        token is { Length: Length } && token.StartsWith(prefix, StringComparison.Ordinal)
                                    && token.AsSpan(prefix.Length).IndexOfAnyExcept("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < 0;

    /// <summary>The SHA-256 of the token's UTF-8 bytes: what is stored and looked up.</summary>
    public static byte[] Hash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));
}
