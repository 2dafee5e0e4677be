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

/// <summary>A request as the receiver saw it: raw body bytes, headers, arrival time.</summary>
public sealed record ReceivedRequest(byte[] Body, IReadOnlyDictionary<string, string> Headers, TimeSpan ArrivedAt, string Path);

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

    private TestReceiver(Func<int, HttpContext, Task> respond)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _app = builder.Build();
        _app.Run(async context =>
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer);
            var headers = context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString());
            _requests.Enqueue(new ReceivedRequest(buffer.ToArray(), headers, _clock.Elapsed, context.Request.Path));
            await respond(Interlocked.Increment(ref _count), context);
        });
    }

    /// <summary>Base URL, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url { get; private set; } = "";

    /// <summary>Requests received so far, in arrival order.</summary>
    public IReadOnlyList<ReceivedRequest> Requests => [.. _requests];

    /// <summary>Starts a receiver answering with <paramref name="respond"/>.</summary>
    public static async Task<TestReceiver> StartAsync(Func<int, HttpContext, Task> respond)
    {
        var receiver = new TestReceiver(respond);
        await receiver._app.StartAsync();
        receiver.Url = receiver._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return receiver;
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

    /// <summary>Waits until at least <paramref name="count"/> requests arrived; false on timeout.</summary>
    public Task<bool> WaitForAsync(int count, TimeSpan timeout) =>
        Dispatcher.EventuallyAsync(() => Task.FromResult(_requests.Count >= count), timeout);

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
