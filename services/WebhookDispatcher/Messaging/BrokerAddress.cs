using System.Net;
using System.Text.RegularExpressions;
using RabbitMQ.Client;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// The broker of <c>ConnectionStrings:RabbitMq</c>: an AMQP URI naming one node,
/// <c>amqp://user:password@host:port/vhost</c>, or the nodes of a cluster, separated by commas in
/// place of the one host: <c>amqp://user:password@10.0.0.1:5672,10.0.0.2:5672,10.0.0.3/vhost</c>
/// (a node without a port uses 5672; user, password and virtual host are the same for every node,
/// as they are in a RabbitMQ cluster). Every connection the service opens may go to any listed
/// node and moves to the next when one is lost.
/// </summary>
public sealed partial class BrokerAddress
{
    /// <summary>The AMQP port used when a node gives none.</summary>
    public const int DefaultPort = 5672;

    private BrokerAddress(IReadOnlyList<DnsEndPoint> nodes, string? userName, string? password, string virtualHost)
    {
        Nodes = nodes;
        UserName = userName;
        Password = password;
        VirtualHost = virtualHost;
    }

    /// <summary>The nodes, in the order given (one or more).</summary>
    public IReadOnlyList<DnsEndPoint> Nodes { get; }

    /// <summary>The user name, or null for the client's default (<c>guest</c>).</summary>
    public string? UserName { get; }

    /// <summary>The password, or null for the client's default (<c>guest</c>).</summary>
    public string? Password { get; }

    /// <summary>The virtual host (<c>/</c> when the URI names none).</summary>
    public string VirtualHost { get; }

    /// <summary>Whether several nodes are listed (a cluster).</summary>
    public bool IsCluster => Nodes.Count > 1;

    /// <summary>Reads <c>ConnectionStrings:RabbitMq</c>.</summary>
    /// <exception cref="Security.StartupRefusedException">The connection string is missing or is not an <c>amqp://</c> URI as described above.</exception>
    public static BrokerAddress FromConfiguration(IConfiguration configuration)
    {
        try
        {
            return Parse(configuration.GetConnectionString("RabbitMq")
                         ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is not set (e.g. amqp://guest:guest@127.0.0.1:5672/)."));
        }
        catch (InvalidOperationException ex)
        {
            // A setting the service cannot start with: said alone at start (Program).
            throw new Security.StartupRefusedException(ex.Message);
        }
    }

    /// <summary>Parses an <c>amqp://</c> URI with one host or several separated by commas.</summary>
    /// <exception cref="InvalidOperationException">It is not such a URI (the message names what is wrong, never the password).</exception>
    public static BrokerAddress Parse(string connectionString)
    {
        var match = UriPattern().Match(connectionString.Trim());
        if (!match.Success)
            throw new InvalidOperationException(
                "ConnectionStrings:RabbitMq must be amqp://user:password@host:port/vhost, with several host:port separated by commas for a cluster.");
        var nodes = match.Groups["hosts"].Value.Split(',').Select(ParseNode).ToList();
        string? user = null, password = null;
        if (match.Groups["user"].Success)
        {
            var parts = match.Groups["user"].Value.Split(':', 2);
            user = parts[0].Length > 0 ? Uri.UnescapeDataString(parts[0]) : null;
            password = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : null;
        }
        var vhost = Uri.UnescapeDataString(match.Groups["vhost"].Value.TrimStart('/'));
        return new BrokerAddress(nodes, user, password, vhost.Length > 0 ? vhost : "/");
    }

    /// <summary>
    /// A RabbitMQ.Client connection factory with these credentials and virtual host; connect with
    /// <see cref="Endpoints"/> so that the client tries the nodes in turn.
    /// </summary>
    public ConnectionFactory CreateFactory(string clientProvidedName)
    {
        var factory = new ConnectionFactory { VirtualHost = VirtualHost, ClientProvidedName = clientProvidedName };
        if (UserName is not null) factory.UserName = UserName;
        if (Password is not null) factory.Password = Password;
        return factory;
    }

    /// <summary>The nodes as RabbitMQ.Client endpoints, in the order given.</summary>
    public IList<AmqpTcpEndpoint> Endpoints => [.. Nodes.Select(n => new AmqpTcpEndpoint(n.Host, n.Port))];

    /// <summary>The nodes as <c>host:port</c>, the form MassTransit's cluster configuration takes.</summary>
    public IEnumerable<string> NodeAddresses => Nodes.Select(Format);

    /// <summary>Nodes and virtual host, without credentials, for messages.</summary>
    public override string ToString() => $"{string.Join(", ", NodeAddresses)} (virtual host {VirtualHost})";

    /// <summary><c>host:port</c>, an IPv6 address in brackets.</summary>
    public static string Format(DnsEndPoint node) =>
        node.Host.Contains(':') ? $"[{node.Host}]:{node.Port}" : $"{node.Host}:{node.Port}";

    private static DnsEndPoint ParseNode(string node)
    {
        var m = NodePattern().Match(node.Trim());
        if (!m.Success)
            throw new InvalidOperationException($"ConnectionStrings:RabbitMq: '{node}' is not a host or host:port.");
        var host = m.Groups["v6"].Success ? m.Groups["v6"].Value : m.Groups["host"].Value;
        var port = DefaultPort;
        if (m.Groups["port"].Success && (!int.TryParse(m.Groups["port"].Value, out port) || port is < 1 or > 65535))
            throw new InvalidOperationException($"ConnectionStrings:RabbitMq: '{node}' has no valid port (1-65535).");
        return new DnsEndPoint(host, port);
    }

    [GeneratedRegex(@"^amqp://(?:(?<user>[^@/]*)@)?(?<hosts>[^@/?#]+)(?<vhost>/[^?#]*)?$", RegexOptions.IgnoreCase)]
    private static partial Regex UriPattern();

    [GeneratedRegex(@"^(?:\[(?<v6>[0-9A-Fa-f:.]+)\]|(?<host>[^:\[\]]+))(?::(?<port>\d+))?$")]
    private static partial Regex NodePattern();
}
