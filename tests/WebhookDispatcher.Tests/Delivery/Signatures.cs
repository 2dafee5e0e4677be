using System.Security.Cryptography;
using System.Text;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Verification as a receiver would write it, independent of the dispatcher's signer: HMAC-SHA256
/// over the raw bytes received.
/// </summary>
public static class Signatures
{
    public static bool LegacyVerifies(ReceivedRequest request, string secret)
    {
        var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), request.Body));
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected),
            Encoding.ASCII.GetBytes(request.Headers["x-webhook-signature"]));
    }

    public static bool StandardVerifies(ReceivedRequest request, string secret)
    {
        var key = Convert.FromBase64String(secret["whsec_".Length..]);
        var signed = Encoding.UTF8.GetBytes($"{request.Headers["webhook-id"]}.{request.Headers["webhook-timestamp"]}.")
            .Concat(request.Body).ToArray();
        var expected = "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, signed));
        return request.Headers["webhook-signature"].Split(' ').Contains(expected);
    }
}
