using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>A request as the receiver saw it: raw body bytes, headers, arrival time, and the TCP connection it came on.</summary>
public sealed record ReceivedRequest(byte[] Body, IReadOnlyDictionary<string, string> Headers, TimeSpan ArrivedAt, string Path,
    string ConnectionId = "");

/// <summary>
/// A real HTTP receiver on 127.0.0.1 (Kestrel, random port) that records every request and
/// answers with a scripted behaviour: given the 1-based number of the request, write the answer.
/// </summary>
public sealed class TestReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedRequest> _requests = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _count;
    private int _inFlight;
    private int _maxInFlight;

    private TestReceiver(Func<int, HttpContext, Task> respond, TimeSpan? keepAliveTimeout)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        if (keepAliveTimeout is { } keepAlive)
            builder.WebHost.ConfigureKestrel(k => k.Limits.KeepAliveTimeout = keepAlive);
        builder.Logging.ClearProviders();
        _app = builder.Build();
        _app.Run(async context =>
        {
            var inFlight = Interlocked.Increment(ref _inFlight);
            for (var max = Volatile.Read(ref _maxInFlight); inFlight > max; max = Volatile.Read(ref _maxInFlight))
                Interlocked.CompareExchange(ref _maxInFlight, inFlight, max);
            try
            {
                using var buffer = new MemoryStream();
                await context.Request.Body.CopyToAsync(buffer);
                var headers = context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString());
                _requests.Enqueue(new ReceivedRequest(buffer.ToArray(), headers, _clock.Elapsed, context.Request.Path, context.Connection.Id));
                await respond(Interlocked.Increment(ref _count), context);
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        });
    }

    /// <summary>The receiver's clock now, on the scale of <see cref="ReceivedRequest.ArrivedAt"/>.</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>Requests being answered right now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The most requests ever answered at once.</summary>
    public int MaxInFlight => Volatile.Read(ref _maxInFlight);

    /// <summary>How many TCP connections the requests so far came on.</summary>
    public int Connections => _requests.Select(r => r.ConnectionId).Distinct().Count();

    /// <summary>Base URL, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url { get; private set; } = "";

    /// <summary>Requests received so far, in arrival order.</summary>
    public IReadOnlyList<ReceivedRequest> Requests => [.. _requests];

    /// <summary>Starts a receiver answering with <paramref name="respond"/>.</summary>
    /// <param name="respond">Writes the answer to request number n (1-based).</param>
    /// <param name="keepAliveTimeout">How long an idle connection stays open (Kestrel's default: 130 s).</param>
    public static async Task<TestReceiver> StartAsync(Func<int, HttpContext, Task> respond, TimeSpan? keepAliveTimeout = null)
    {
        var receiver = new TestReceiver(respond, keepAliveTimeout);
        await receiver._app.StartAsync();
        receiver.Url = receiver._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return receiver;
    }

    /// <summary>Starts a receiver whose answer depends on the request's path and its 1-based number on that path.</summary>
    public static Task<TestReceiver> PerPathAsync(Func<string, int, HttpContext, Task> respond)
    {
        var counts = new ConcurrentDictionary<string, int>();
        return StartAsync((_, c) => respond(c.Request.Path, counts.AddOrUpdate(c.Request.Path.Value ?? "", 1, (_, n) => n + 1), c));
    }

    /// <summary>Starts a receiver that always answers <paramref name="status"/>.</summary>
    public static Task<TestReceiver> AnsweringAsync(int status) => StartAsync((_, c) =>
    {
        c.Response.StatusCode = status;
        return c.Response.WriteAsync($"answer {status}");
    });

    /// <summary>Starts a receiver that answers <paramref name="status"/> to the first <paramref name="failures"/> requests, then 200.</summary>
    public static Task<TestReceiver> FailingFirstAsync(int failures, int status) => StartAsync((n, c) =>
    {
        c.Response.StatusCode = n <= failures ? status : 200;
        return Task.CompletedTask;
    });

    /// <summary>
    /// Starts a receiver that answers by the attempt number of each delivery (1-based, counted
    /// by its <c>X-Webhook-Delivery</c> header), so several deliveries can follow one script.
    /// </summary>
    public static Task<TestReceiver> PerDeliveryAsync(Func<int, HttpContext, Task> respond)
    {
        var attempts = new ConcurrentDictionary<string, int>();
        return StartAsync((_, c) => respond(attempts.AddOrUpdate(c.Request.Headers["X-Webhook-Delivery"].ToString(), 1, (_, n) => n + 1), c));
    }

    /// <summary>The requests of each delivery (by its <c>X-Webhook-Delivery</c> header), in arrival order.</summary>
    public IReadOnlyDictionary<Guid, List<ReceivedRequest>> ByDelivery =>
        Requests.GroupBy(r => Guid.Parse(r.Headers["x-webhook-delivery"])).ToDictionary(g => g.Key, g => g.ToList());

    /// <summary>Waits until at least <paramref name="count"/> requests arrived (to <paramref name="path"/> only, when given); false on timeout.</summary>
    public Task<bool> WaitForAsync(int count, TimeSpan timeout, string? path = null) =>
        Dispatcher.EventuallyAsync(() => Task.FromResult(To(path).Count >= count), timeout);

    /// <summary>Requests received so far to <paramref name="path"/> (all when null), in arrival order.</summary>
    public IReadOnlyList<ReceivedRequest> To(string? path) => [.. _requests.Where(r => path is null || r.Path == path)];

    /// <summary>Waits until the receiver's clock reads <paramref name="time"/>.</summary>
    public async Task WaitUntilAsync(TimeSpan time)
    {
        if (time > Now) await Task.Delay(time - Now);
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
