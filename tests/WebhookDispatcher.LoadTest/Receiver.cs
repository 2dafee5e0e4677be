using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace WebhookDispatcher.LoadTest;

/// <summary>
/// The subscribers' side: Kestrel on 127.0.0.1. <c>/fast/…</c> answers 200 at once,
/// <c>/paced/…</c> after 100 ms, <c>/slow/…</c> after 5 s, <c>/hang/…</c> never (until the
/// dispatcher gives up). Every request is counted per path, and its latency is taken from the
/// moment its event was published. Open connections are counted per local port, and requests in
/// progress per tracked path prefix (<see cref="Track"/>), with their peaks.
/// </summary>
internal sealed class Receiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, PathStats> _paths = new();
    private readonly ConcurrentDictionary<string, byte> _deliveries = new();
    private int _duplicates;

    /// <summary>Publish time (Stopwatch timestamp) of each event, by event id.</summary>
    public ConcurrentDictionary<Guid, long> PublishedAt { get; } = new();

    /// <summary>When the publish of each event completed (the broker's confirm; Stopwatch timestamp), for fixed-rate scenarios.</summary>
    public ConcurrentDictionary<Guid, long> ConfirmedAt { get; } = new();

    public Receiver()
    {
        var builder = WebApplication.CreateSlimBuilder();
        // Several ports: the first is Url; the others are handed out one by one (FreshUrl), so a
        // subscription can point at an address the dispatcher has no connections to yet.
        builder.WebHost.UseUrls(string.Join(';', Enumerable.Repeat("http://127.0.0.1:0", 9)));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxConcurrentConnections = null;
            k.ConfigureEndpointDefaults(listen => listen.Use(next => async connection =>
            {
                var gauge = connection.LocalEndPoint is System.Net.IPEndPoint local ? Connections(local.Port) : null;
                gauge?.Enter();
                try
                {
                    await next(connection);
                }
                finally
                {
                    gauge?.Exit();
                }
            }));
        });
        builder.Logging.ClearProviders();
        _app = builder.Build();
        _app.Run(Handle);
    }

    public string Url { get; private set; } = "";

    private readonly Queue<string> _fresh = new();

    /// <summary>Another address of this receiver, not handed out before (8 in all).</summary>
    /// <exception cref="InvalidOperationException">All have been handed out.</exception>
    public string FreshUrl() => _fresh.TryDequeue(out var url) ? url : throw new InvalidOperationException("no fresh receiver address left");

    /// <summary>Requests that carried an <c>X-Webhook-Delivery</c> already seen (the same delivery POSTed again).</summary>
    public int Duplicates => _duplicates;

    public async Task StartAsync()
    {
        await _app.StartAsync();
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        Url = addresses[0];
        foreach (var a in addresses.Skip(1)) _fresh.Enqueue(a);
    }

    public PathStats Stats(string path) => _paths.GetOrAdd(path, _ => new PathStats());

    private readonly ConcurrentDictionary<int, Gauge> _connections = new();
    private volatile KeyValuePair<string, Gauge>[] _tracked = [];

    /// <summary>Connections open to local port <paramref name="port"/>, now and at the peak.</summary>
    public Gauge Connections(int port) => _connections.GetOrAdd(port, _ => new Gauge());

    /// <summary>Starts counting the requests in progress whose path starts with <paramref name="prefix"/>.</summary>
    public Gauge Track(string prefix)
    {
        var gauge = new Gauge();
        lock (_connections) _tracked = [.. _tracked, new(prefix, gauge)];
        return gauge;
    }

    private volatile KeyValuePair<string, Func<byte[], long, int>>[] _watchers = [];

    /// <summary>
    /// Requests whose path starts with <paramref name="prefix"/> are read whole and handed to
    /// <paramref name="watcher"/> (body, arrival Stopwatch timestamp), which returns the status to answer.
    /// </summary>
    public void Watch(string prefix, Func<byte[], long, int> watcher)
    {
        lock (_connections) _watchers = [.. _watchers, new(prefix, watcher)];
    }

    private async Task Handle(HttpContext context)
    {
        var arrived = Stopwatch.GetTimestamp();
        var path = context.Request.Path.Value ?? "";
        foreach (var (prefix, watcher) in _watchers)
        {
            if (!path.StartsWith(prefix, StringComparison.Ordinal)) continue;
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            Stats(path).Record(arrived, null, _deliveries.TryAdd(context.Request.Headers["X-Webhook-Delivery"].ToString(), 0));
            context.Response.StatusCode = watcher(body.ToArray(), arrived);
            return;
        }
        Gauge? tracked = null;
        foreach (var (prefix, gauge) in _tracked)
            if (path.StartsWith(prefix, StringComparison.Ordinal)) tracked = gauge;
        tracked?.Enter(); // from the request's arrival to the end of the answer
        try
        {
            var buffer = new byte[16 * 1024];
            while (await context.Request.Body.ReadAsync(buffer) > 0) { }
            var stats = Stats(path);
            var delivery = context.Request.Headers["X-Webhook-Delivery"].ToString();
            var first = _deliveries.TryAdd(delivery, 0);
            if (!first) Interlocked.Increment(ref _duplicates);
            Arrival? arrival = Guid.TryParse(context.Request.Headers["webhook-id"], out var eventId) && PublishedAt.TryGetValue(eventId, out var published)
                ? new Arrival(eventId, published, arrived)
                : null;
            stats.Record(arrived, arrival, first);
            await Respond(context, path);
        }
        finally
        {
            tracked?.Exit();
        }
    }

    private static async Task Respond(HttpContext context, string path)
    {
        if (path.StartsWith("/paced/", StringComparison.Ordinal))
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        else if (path.StartsWith("/slow/", StringComparison.Ordinal))
            await Task.Delay(TimeSpan.FromSeconds(5));
        else if (path.StartsWith("/hang/", StringComparison.Ordinal))
            await Task.Delay(TimeSpan.FromMinutes(5), context.RequestAborted).ContinueWith(_ => { });
        context.Response.StatusCode = 200;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

/// <summary>A count of things in progress (connections, requests) and its peak.</summary>
internal sealed class Gauge
{
    private int _current;
    private int _peak;

    public int Current => Volatile.Read(ref _current);
    public int Peak => Volatile.Read(ref _peak);

    public void Enter()
    {
        var now = Interlocked.Increment(ref _current);
        int peak;
        while (now > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, peak) != peak) { }
    }

    public void Exit() => Interlocked.Decrement(ref _current);

    /// <summary>Forgets the peak (the current count stays).</summary>
    public void ResetPeak() => Volatile.Write(ref _peak, Current);
}

/// <summary>A webhook whose event this process published: the event, when it was published and when the POST arrived (Stopwatch timestamps).</summary>
internal readonly record struct Arrival(Guid EventId, long PublishedAt, long ArrivedAt)
{
    /// <summary>Publish → arrival, in milliseconds.</summary>
    public double LatencyMs => Stopwatch.GetElapsedTime(PublishedAt, ArrivedAt).TotalMilliseconds;
}

/// <summary>Requests to one path: count, first and last arrival time, publish → arrival latencies.</summary>
internal sealed class PathStats
{
    private readonly object _lock = new();
    private readonly List<Arrival> _arrivals = [];

    public int Count { get; private set; }
    public int Unique { get; private set; }
    public long First { get; private set; }
    public long Last { get; private set; }

    public void Record(long arrivedAt, Arrival? arrival, bool first)
    {
        lock (_lock)
        {
            if (Count == 0) First = arrivedAt;
            Count++;
            if (first) Unique++;
            Last = arrivedAt;
            if (arrival is { } a) _arrivals.Add(a);
        }
    }

    /// <summary>The arrivals of events this process published (a redelivered POST counts again).</summary>
    public Arrival[] Arrivals()
    {
        lock (_lock) return [.. _arrivals];
    }
}
