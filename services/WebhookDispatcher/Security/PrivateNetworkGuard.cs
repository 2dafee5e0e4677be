using System.Net;
using System.Net.Sockets;

namespace WebhookDispatcher.Security;

/// <summary>
/// Keeps subscriber URLs from reaching into the private network (SSRF): the outbound connection
/// is made only to addresses that are public unicast. The check runs at connect time on the
/// addresses actually resolved, so a host name that resolves to 10.0.0.1 or 127.0.0.1 (or
/// rebinds to one later) is refused just like the literal address.
/// </summary>
public static class PrivateNetworkGuard
{
    /// <summary>
    /// Whether <paramref name="address"/> is loopback, private (RFC 1918, RFC 4193), link-local,
    /// carrier-grade NAT (RFC 6598), unspecified, multicast, broadcast or another special-purpose
    /// range (RFC 6890) — anything a webhook must not be sent to.
    /// </summary>
    public static bool IsNonPublic(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (IPAddress.IsLoopback(address)) return true;

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] switch
            {
                0 or 10 or 127 => true,
                100 => b[1] is >= 64 and <= 127,          // 100.64.0.0/10 carrier-grade NAT
                169 => b[1] == 254,                       // link-local, cloud metadata
                172 => b[1] is >= 16 and <= 31,
                192 => (b[1] == 168) || (b[1] == 0 && b[2] is 0 or 2) || (b[1] == 88 && b[2] == 99),
                198 => b[1] is 18 or 19 || (b[1] == 51 && b[2] == 100),
                203 => b[1] == 0 && b[2] == 113,
                >= 224 => true,                           // multicast, reserved, broadcast
                _ => false,
            };
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            // Allow-list: only global unicast (2000::/3) is public. That excludes ::, ::1, the
            // IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, unique local fc00::/7, link-local
            // fe80::/10 and multicast ff00::/8 in one test.
            var b = address.GetAddressBytes();
            if ((b[0] & 0xE0) != 0x20) return true;
            if (b[0] == 0x20 && b[1] == 0x02) return IsNonPublic(new IPAddress(b.AsSpan(2, 4))); // 6to4 carries an IPv4 address
            // IETF protocol assignments 2001::/23: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID 2001:10::/28 and 2001:20::/28 …
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02) return true;
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) return true;        // documentation 2001:db8::/32
            if (b[0] == 0x3F && b[1] == 0xFF && (b[2] & 0xF0) == 0) return true;                  // documentation 3fff::/20 (RFC 9637)
            return false;
        }

        return true;
    }

    /// <summary>
    /// A <see cref="SocketsHttpHandler.ConnectCallback"/> that resolves the host, drops non-public
    /// addresses unless <paramref name="allowPrivateNetworks"/>, and connects to the first address
    /// that answers.
    /// </summary>
    /// <param name="allowPrivateNetworks">Let loopback, private and link-local addresses through (Development only).</param>
    /// <param name="network">
    /// Name resolution and TCP connect; null (production) means <see cref="WebhookNetwork.Default"/>:
    /// DNS and a plain socket. Tests pass their own to resolve names to chosen addresses and to see
    /// which addresses the guard let through; the filtering here is the same either way.
    /// </param>
    /// <exception cref="BlockedAddressException">Every resolved address is non-public.</exception>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectCallback(bool allowPrivateNetworks,
        WebhookNetwork? network = null)
    {
        network ??= WebhookNetwork.Default;
        return async (context, cancellationToken) =>
        {
            var host = context.DnsEndPoint.Host;
            var addresses = IPAddress.TryParse(host, out var literal)
                ? [literal]
                : await network.ResolveAsync(host, cancellationToken).ConfigureAwait(false);
            var allowed = allowPrivateNetworks ? addresses : addresses.Where(a => !IsNonPublic(a)).ToArray();
            if (allowed.Length == 0)
                throw new BlockedAddressException(host);
            return await network.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
        };
    }
}

/// <summary>
/// The two network operations behind <see cref="PrivateNetworkGuard.ConnectCallback"/>: resolving a
/// host name and opening a TCP connection to addresses the guard has already approved. Production
/// uses <see cref="Default"/>; a test host registers a subclass in the service collection to map
/// test names to addresses of its choosing and to observe what is dialled.
/// </summary>
public class WebhookNetwork
{
    /// <summary>DNS and plain sockets: what the service uses unless a test replaces it.</summary>
    public static WebhookNetwork Default { get; } = new();

    /// <summary>The addresses of <paramref name="host"/> (a name, never a literal address).</summary>
    /// <exception cref="SocketException">The name does not resolve.</exception>
    public virtual Task<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken) =>
        Dns.GetHostAddressesAsync(host, cancellationToken);

    /// <summary>
    /// A connected stream to the first of <paramref name="addresses"/> (already filtered by the
    /// guard) that accepts a connection on <paramref name="port"/>, tried in order.
    /// </summary>
    /// <exception cref="SocketException">No address accepted the connection.</exception>
    public virtual async ValueTask<Stream> ConnectAsync(IPAddress[] addresses, int port, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}

/// <summary>Thrown when a webhook URL resolves only to addresses the dispatcher must not reach.</summary>
/// <param name="host">The host name or address of the URL.</param>
public sealed class BlockedAddressException(string host)
    : Exception($"'{host}' resolves only to loopback, private or otherwise non-public addresses, which webhooks may not reach.");
