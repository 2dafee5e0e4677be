using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Production;

/// <summary>
/// The 64 KiB response cap, measured where it matters: the bytes the dispatcher's HTTP client
/// actually read from the socket (counted by <see cref="StubNetwork"/> under the production
/// client), not only the length of the stored excerpt.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class ResponseCapTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private const int Cap = DeliveryOptions.MaxResponseBytesRead;

    /// <summary>Room for the status line and headers and one read-ahead of the client's connection buffer.</summary>
    private const int Slack = 32 * 1024;

    [TestCase(64 * 1024 * 1024, true, TestName = "A 64 MiB body with Content-Length is read only up to the cap, then the connection is closed")]
    [TestCase(64 * 1024 * 1024, false, TestName = "A 64 MiB chunked body is read only up to the cap, then the connection is closed")]
    [TestCase(1024 * 1024, true, TestName = "A 1 MiB body with Content-Length is read only up to the cap, then the connection is closed")]
    [TestCase(1024 * 1024, false, TestName = "A 1 MiB chunked body is read only up to the cap, then the connection is closed")]
    public async Task Only_the_capped_bytes_are_read_from_the_socket(int size, bool contentLength)
    {
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = 200;
            if (contentLength) c.Response.ContentLength = size;
            var chunk = new byte[16 * 1024];
            Array.Fill(chunk, (byte)'a');
            try
            {
                // Kestrel drops writes to a connection the client has closed without throwing; RequestAborted tells.
                for (var written = 0; written < size && !c.RequestAborted.IsCancellationRequested; written += chunk.Length)
                    await c.Response.Body.WriteAsync(chunk, c.RequestAborted);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                // The client went away.
            }
        });
        var port = new Uri(receiver.Url).Port;
        var host = ProductionSetup.NewHost("big");
        ProductionSetup.Network.Name(host, ProductionSetup.PublicV4);
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);
        var created = await client.CreateAsync($"http://{host}:{port}/hook", ["email.received"], retryCount: 0);

        await ProductionSetup.Workers.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, Patience), Is.True);
        // The connection's end is the positive signal: after it, the count cannot grow.
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(ProductionSetup.Network.ConnectionsTo(port) is { Opened: 1, Closed: 1 }),
            TimeSpan.FromSeconds(15)), Is.True, $"the client closed its one connection (opened, closed: {ProductionSetup.Network.ConnectionsTo(port)})");
        var delivery = (await Dispatcher.DeliveriesAsync(created.Id())).Single();
        Assert.Multiple(() =>
        {
            Assert.That(ProductionSetup.Network.BytesReadFrom(port), Is.InRange(Cap, Cap + Slack), "bytes read from the socket");
            Assert.That(delivery.ResponseBody, Is.EqualTo(new string('a', WebhookDelivery.MaxStoredResponseChars)));
            Assert.That(delivery.Attempts.Single().ResponseExcerpt, Is.EqualTo(new string('a', WebhookDelivery.MaxStoredResponseChars)));
        });
    }
}
