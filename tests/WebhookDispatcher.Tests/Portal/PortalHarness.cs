using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>Keeps every log line of a dispatcher (category, level, message, exception), to check what it never logs.</summary>
public sealed class LogSink : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    /// <summary>Everything logged so far.</summary>
    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Sink(categoryName, _lines);

    public void Dispose() { }

    private sealed class Sink(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}

/// <summary>Records every request the dispatcher receives (path and query, and its <c>Referer</c> header), ahead of its own middleware.</summary>
public sealed class RequestRecorder : IStartupFilter
{
    private readonly ConcurrentQueue<(string Target, string? Referer)> _requests = new();

    /// <summary>Every request so far: path with query, and the Referer header when one was sent.</summary>
    public IReadOnlyList<(string Target, string? Referer)> Requests => [.. _requests];

    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.Use((context, following) =>
        {
            var referer = context.Request.Headers.Referer.ToString();
            _requests.Enqueue((context.Request.Path + context.Request.QueryString, referer.Length > 0 ? referer : null));
            return following(context);
        });
        next(app);
    };
}

/// <summary>A page on another origin that shows the portal in an iframe (the way Notely embeds it).</summary>
public sealed class Embedder : IAsyncDisposable
{
    private readonly WebApplication _app;

    private Embedder(WebApplication app) => _app = app;

    /// <summary>The iframe's source for the next load.</summary>
    public string FrameSource { get; set; } = "about:blank";

    /// <summary>The page's origin, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Origin { get; private set; } = "";

    /// <summary>Starts the page on 127.0.0.1 and a free port.</summary>
    public static async Task<Embedder> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var embedder = new Embedder(app);
        app.MapGet("/", (HttpContext c) =>
        {
            c.Response.ContentType = "text/html; charset=utf-8";
            return c.Response.WriteAsync($"""
                <!doctype html><html lang="en"><head><title>Notely settings</title></head>
                <body><h1>Notely · Settings · Webhooks</h1>
                <iframe id="portal" title="Webhooks portal" width="1200" height="700" src="{System.Net.WebUtility.HtmlEncode(embedder.FrameSource)}"></iframe>
                </body></html>
                """);
        });
        await app.StartAsync();
        embedder.Origin = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        return embedder;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

/// <summary>
/// What the browser tests share: a dispatcher of their own on real Kestrel (so a real browser can
/// reach it), whose every log line is kept; a receiver whose answer the test switches between
/// failing and working; and two pages on other origins, one allowed to embed the portal.
/// </summary>
public sealed class PortalHarness : IAsyncDisposable
{
    /// <summary>The operator scope the dispatcher is configured with.</summary>
    public const string OperatorScope = "webhooks:operator";

    private volatile bool _receiverFails;

    private PortalHarness(IsolatedDispatcher dispatcher, TestReceiver receiver, LogSink logs, RequestRecorder requests, Embedder allowed, Embedder other)
    {
        Requests = requests;
        Dispatcher = dispatcher;
        Receiver = receiver;
        Logs = logs;
        AllowedEmbedder = allowed;
        OtherEmbedder = other;
    }

    public IsolatedDispatcher Dispatcher { get; }
    public TestReceiver Receiver { get; }
    public LogSink Logs { get; }
    public RequestRecorder Requests { get; }
    public Embedder AllowedEmbedder { get; }
    public Embedder OtherEmbedder { get; }

    /// <summary>Whether the receiver answers 500 (true) or 200.</summary>
    public bool ReceiverFails { get => _receiverFails; set => _receiverFails = value; }

    /// <summary>The receiver's URL for a path.</summary>
    public string ReceiverUrl(string path) => Receiver.Url.TrimEnd('/') + path;

    public static async Task<PortalHarness> StartAsync()
    {
        var logs = new LogSink();
        var requests = new RequestRecorder();
        PortalHarness? harness = null;
        var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            var fails = harness?.ReceiverFails ?? false;
            c.Response.StatusCode = fails ? 500 : 200;
            await c.Response.WriteAsync(fails ? "receiver is down for maintenance" : "ok");
        });
        var allowed = await Embedder.StartAsync();
        var other = await Embedder.StartAsync();
        var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Portal:FrameAncestors"] = allowed.Origin,
            ["Portal:OperatorScope"] = OperatorScope,
            // Request lines are logged, so the test sees that no URL the server got carries a token.
            ["Logging:LogLevel:Default"] = "Information",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Information",
        }, services: s =>
        {
            s.AddSingleton<ILoggerProvider>(logs);
            s.AddSingleton<IStartupFilter>(requests);
        });
        harness = new PortalHarness(dispatcher, receiver, logs, requests, allowed, other);
        return harness;
    }

    /// <summary>A client authenticated with a user's JWT (or none).</summary>
    public HttpClient Client(string? userId) => Dispatcher.Client(userId);

    /// <summary>A client authenticated with an operator's JWT (carrying the operator scope).</summary>
    public HttpClient OperatorClient(string operatorId)
    {
        var client = Dispatcher.Client(null);
        var token = AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            operatorId, TimeSpan.FromHours(1), OperatorScope);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>Asks for a portal link as <paramref name="userId"/>; returns its URL.</summary>
    public async Task<string> LinkAsync(string userId, bool readOnly = false, int expiresInSeconds = 600)
    {
        using var client = Client(userId);
        var response = await client.PostAsJsonAsync("/api/webhooks/portal-sessions", new { read_only = readOnly, expires_in_seconds = expiresInSeconds });
        Assert.That((int)response.StatusCode, Is.EqualTo(201), await response.Content.ReadAsStringAsync());
        return (await response.JsonAsync())["url"]!.GetValue<string>();
    }

    /// <summary>Asks for an operator portal link as <paramref name="operatorId"/>.</summary>
    public async Task<string> OperatorLinkAsync(string operatorId)
    {
        using var client = OperatorClient(operatorId);
        var response = await client.PostAsJsonAsync("/api/operator/portal-sessions", new { expires_in_seconds = 600 });
        Assert.That((int)response.StatusCode, Is.EqualTo(201), await response.Content.ReadAsStringAsync());
        return (await response.JsonAsync())["url"]!.GetValue<string>();
    }

    /// <summary>The token in a link's fragment.</summary>
    public static string TokenOf(string link) => link[(link.IndexOf("#token=", StringComparison.Ordinal) + 7)..];

    /// <summary>Opens a link through the API (as the page does) and returns a client holding the session token.</summary>
    public async Task<(HttpClient Client, string SessionToken)> SessionAsync(string link)
    {
        using var anonymous = Client(null);
        var response = await anonymous.PostAsJsonAsync("/portal/session", new { token = TokenOf(link) });
        Assert.That((int)response.StatusCode, Is.EqualTo(200), await response.Content.ReadAsStringAsync());
        var token = (await response.JsonAsync())["session_token"]!.GetValue<string>();
        var client = Client(null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return (client, token);
    }

    /// <summary>Creates a subscription through the API as <paramref name="userId"/>.</summary>
    public async Task<JsonNode> SubscribeAsync(string userId, string path, int retryCount)
    {
        using var client = Client(userId);
        return await client.CreateAsync(ReceiverUrl(path), ["email.received"], retryCount: retryCount);
    }

    /// <summary>
    /// Saves a screenshot of <paramref name="page"/>: with <c>UPDATE_PORTAL_SCREENSHOTS=1</c> as
    /// docs/portal/<paramref name="name"/>.png (the images docs/portal.md shows), otherwise beside
    /// the test's output, so a test run leaves the repository as it found it.
    /// </summary>
    public static async Task ScreenshotAsync(IPage page, string name)
    {
        var path = Environment.GetEnvironmentVariable("UPDATE_PORTAL_SCREENSHOTS") == "1"
            ? Repo.Path($"docs/portal/{name}.png")
            : System.IO.Path.Combine(TestContext.CurrentContext.WorkDirectory, "portal-screenshots", $"{name}.png");
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        // The toast is fixed to the viewport: in a full-page picture it would float over the middle,
        // so it is put away first (as after its 6 s), its fade skipped.
        await page.EvaluateAsync("document.getElementById('toast')?.classList.remove('shown')");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true, Animations = ScreenshotAnimations.Disabled });
    }

    public async ValueTask DisposeAsync()
    {
        await Dispatcher.DisposeAsync();
        await Receiver.DisposeAsync();
        await AllowedEmbedder.DisposeAsync();
        await OtherEmbedder.DisposeAsync();
    }
}
