using System.Net;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Production;

/// <summary>
/// Two dispatchers with production settings for the tests of this namespace, each on its own
/// RabbitMQ virtual host and on Kestrel at 127.0.0.1:
/// <see cref="Workers"/> runs API and consumers with <c>Delivery:AllowPrivateNetworks=false</c> and
/// the <see cref="Network"/> stub behind the SSRF guard; <see cref="HttpsOnly"/> is an API-only
/// instance with <c>Subscriptions:RequireHttps=true</c> (its receivers would need trusted TLS
/// certificates, which a test cannot have).
/// </summary>
[SetUpFixture]
public sealed class ProductionSetup
{
    /// <summary>A made-up public IPv4 address that <see cref="Network"/> routes to 127.0.0.1.</summary>
    public static readonly IPAddress PublicV4 = IPAddress.Parse("93.184.215.14");

    /// <summary>A made-up public IPv6 address that <see cref="Network"/> routes to 127.0.0.1.</summary>
    public static readonly IPAddress PublicV6 = IPAddress.Parse("2606:4700::1111");

    private static IsolatedDispatcher? _workers;
    private static IsolatedDispatcher? _httpsOnly;

    /// <summary>Name resolution and connects of <see cref="Workers"/>.</summary>
    public static StubNetwork Network { get; } = new();

    /// <summary>API and consumers, production SSRF settings, plain-http URLs accepted.</summary>
    public static IsolatedDispatcher Workers => _workers ?? throw new InvalidOperationException("not started");

    /// <summary>API only, https URLs only.</summary>
    public static IsolatedDispatcher HttpsOnly => _httpsOnly ?? throw new InvalidOperationException("not started");

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        Network.Route(PublicV4);
        Network.Route(PublicV6);
        _workers = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "false",
            ["Subscriptions:RequireHttps"] = "false",
        }, Network);
        _httpsOnly = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Dispatcher:Workers"] = "false",
            ["Delivery:AllowPrivateNetworks"] = "false",
            ["Subscriptions:RequireHttps"] = "true",
        });
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        if (_workers is not null) await _workers.DisposeAsync();
        if (_httpsOnly is not null) await _httpsOnly.DisposeAsync();
    }

    /// <summary>A host name of this test alone, e.g. <c>t-1a2b3c4d.example.test</c>.</summary>
    public static string NewHost(string label) => $"{label}-{Guid.NewGuid().ToString("N")[..8]}.example.test";
}
