using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>The outbound client as configured by the service, against real local receivers.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class SenderTests
{
    private static WebhookSender Sender(bool allowPrivateNetworks)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = allowPrivateNetworks.ToString(),
            ["Dispatcher:Workers"] = "false",
        });
        builder.AddDeliveries();
        return builder.Build().Services.GetRequiredService<WebhookSender>();
    }

    private static WebhookRequest Request(string url, int timeoutSeconds = 5) =>
        new(url, "{}"u8.ToArray(), new Dictionary<string, string>(), TimeSpan.FromSeconds(timeoutSeconds));

    [TestCase("http://127.0.0.1:{0}/")]
    [TestCase("http://localhost:{0}/")]
    [TestCase("http://[::ffff:127.0.0.1]:{0}/")]
    public async Task Private_addresses_are_refused_unless_allowed(string template)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var url = string.Format(template, new Uri(receiver.Url).Port);

        var response = await Sender(allowPrivateNetworks: false).SendAsync(Request(url), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(response.Outcome, Is.EqualTo(AttemptOutcome.BlockedAddress));
            Assert.That(response.StatusCode, Is.Null);
            Assert.That(receiver.Requests, Is.Empty);
        });
    }

    [Test]
    public async Task A_closed_port_is_a_refused_connection()
    {
        int port;
        await using (var closed = await TestReceiver.AnsweringAsync(200))
            port = new Uri(closed.Url).Port;

        var response = await Sender(allowPrivateNetworks: true).SendAsync(Request($"http://127.0.0.1:{port}/"), CancellationToken.None);

        Assert.That(response.Outcome, Is.EqualTo(AttemptOutcome.ConnectionRefused));
    }

    [Test]
    public async Task Of_a_huge_body_only_the_start_is_read_the_connection_is_dropped_and_its_first_4096_characters_kept()
    {
        const int chunks = 1600; // 100 MiB: more than loopback's socket buffers can swallow
        var chunk = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 64 * 1024 / 8).Select(i => (i % 100_000_000).ToString("D8"))));
        var stopped = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = 200;
            try
            {
                for (var i = 0; i < chunks; i++)
                    await c.Response.Body.WriteAsync(chunk, c.RequestAborted);
                // Kestrel may turn writes after the client left into no-ops: wait for it to notice.
                await Task.Delay(TimeSpan.FromSeconds(10), c.RequestAborted);
                stopped.TrySetResult(false);
            }
            catch (Exception)
            {
                stopped.TrySetResult(true); // the client went away mid-body
            }
        });

        var response = await Sender(allowPrivateNetworks: true).SendAsync(Request(receiver.Url), CancellationToken.None);

        var dropped = await stopped.Task.WaitAsync(TimeSpan.FromSeconds(90));
        Assert.Multiple(() =>
        {
            Assert.That(response.Outcome, Is.EqualTo(AttemptOutcome.Success));
            Assert.That(response.ResponseExcerpt, Is.EqualTo(Encoding.ASCII.GetString(chunk, 0, 4096)), "the body's first 4096 characters, exactly");
            Assert.That(dropped, Is.True, "the sender closed the connection instead of reading (or draining) the rest");
        });
    }

    [TestCase("7", 7)]
    [TestCase("120", 120)]
    public async Task Retry_After_seconds_on_429_are_read(string header, int seconds)
    {
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = 429;
            c.Response.Headers.RetryAfter = header;
            return Task.CompletedTask;
        });

        var response = await Sender(allowPrivateNetworks: true).SendAsync(Request(receiver.Url), CancellationToken.None);

        Assert.That(response.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(seconds)));
    }

    [Test]
    public async Task Retry_After_is_ignored_on_a_500()
    {
        await using var receiver = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = 500;
            c.Response.Headers.RetryAfter = "30";
            return Task.CompletedTask;
        });

        var response = await Sender(allowPrivateNetworks: true).SendAsync(Request(receiver.Url), CancellationToken.None);

        Assert.That(response.RetryAfter, Is.Null);
    }
}
