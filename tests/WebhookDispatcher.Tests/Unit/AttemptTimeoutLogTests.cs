using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Portal;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// A subscriber slower than its timeout is an attempt's outcome, not an error of the service: the
/// attempt client's deadline is logged below Error, so a tenant's slow endpoint pages no one.
/// </summary>
public sealed class AttemptTimeoutLogTests
{
    [Test]
    public async Task A_subscriber_past_its_timeout_is_logged_as_information_not_as_an_error()
    {
        // A receiver that accepts the connection and never answers.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var accepted = listener.AcceptTcpClientAsync();
        var logs = new LogSink();
        var services = new ServiceCollection();
        services.AddLogging(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        services.AddOptions<DeliveryOptions>().Configure(o => o.AllowPrivateNetworks = true);
        DeliveryExtensions.AddWebhookClient(services);
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient(WebhookSender.ClientName);
        var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/hook");
        request.Options.Set(WebhookSender.TimeoutKey, TimeSpan.FromMilliseconds(300));

        Assert.That(async () => await client.SendAsync(request), Throws.InstanceOf<Exception>(), "the deadline ends the attempt");

        var timeouts = logs.Lines.Where(l => l.Contains("OnTimeout", StringComparison.Ordinal)).ToList();
        Assert.That(timeouts, Is.Not.Empty, "the timeout is still logged");
        Assert.That(timeouts, Has.All.StartsWith("Information "), string.Join("\n", timeouts));
        (await accepted).Dispose();
    }
}
