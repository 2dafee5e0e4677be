using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// A dispatcher of its own beside the shared one, as a separate deployment would run: the
/// <c>Production</c> environment (so no Development defaults such as allowing private networks),
/// Kestrel on 127.0.0.1 (real sockets, real request limits), the run's database, and a RabbitMQ
/// virtual host of its own so its consumers never compete with the shared instance's for messages.
/// Settings given to <see cref="StartAsync"/> override the production defaults.
/// </summary>
public sealed class IsolatedDispatcher : IAsyncDisposable
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<IsolatedDispatcher, bool> Live = new();
    private readonly WebApplicationFactory<Program> _factory;
    private readonly string? _vhost; // created for this instance, removed with it
    private bool _stopped;

    private IsolatedDispatcher(WebApplicationFactory<Program> factory, string? vhost, string virtualHost, Uri baseAddress, Task stopping)
    {
        _factory = factory;
        _vhost = vhost;
        VirtualHost = virtualHost;
        BaseAddress = baseAddress;
        Stopping = stopping;
    }

    /// <summary>
    /// Completes when the host begins to stop: before any of the service's own stopping work
    /// (the delivery engine's <c>StoppingAsync</c> waits for attempts in flight, and
    /// <c>ApplicationStopping</c> fires only after it).
    /// </summary>
    public Task Stopping { get; }

    /// <summary>The RabbitMQ virtual host the instance uses.</summary>
    public string VirtualHost { get; }

    /// <summary>Where the instance's Kestrel listens, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public Uri BaseAddress { get; }

    /// <summary>The instance's services.</summary>
    public IServiceProvider Services => _factory.Services;

    /// <summary>The instances started and not disposed yet (for tests that restart a server under all of them).</summary>
    public static IReadOnlyList<IsolatedDispatcher> Running => [.. Live.Keys];

    /// <summary>
    /// Starts an instance. <paramref name="settings"/> override the production configuration;
    /// <paramref name="network"/>, when given, replaces DNS and sockets behind the SSRF guard;
    /// <paramref name="sharedBroker"/> puts it on the shared instance's virtual host instead of one
    /// of its own (a second replica of the same deployment); <paramref name="virtualHost"/> puts it
    /// on an existing virtual host, which it leaves in place (the successor of an instance that
    /// stopped, or a dispatcher started where the topology command ran); <paramref name="clock"/>,
    /// when given, is the process's clock (a replica whose clock is off); <paramref name="services"/>,
    /// when given, adds or replaces services last (e.g. a logger provider that keeps every line).
    /// </summary>
    public static async Task<IsolatedDispatcher> StartAsync(IReadOnlyDictionary<string, string?> settings, WebhookNetwork? network = null,
        bool sharedBroker = false, string? virtualHost = null, TimeProvider? clock = null, Action<IServiceCollection>? services = null)
    {
        if (sharedBroker && virtualHost is not null) throw new ArgumentException("Either the shared virtual host or a given one, not both.");
        var owned = sharedBroker || virtualHost is not null ? null : await Broker.CreateVirtualHostAsync("isolated");
        var used = owned ?? virtualHost;
        var rabbit = used is null
            ? TestInfrastructure.RabbitMq
            : new UriBuilder(TestInfrastructure.RabbitMq) { Path = "/" + Uri.EscapeDataString(used) }.Uri.ToString();
        var stopSignal = new StopSignal();
        var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(builder =>
        {
            builder.UseEnvironment("Production");
            builder.UseSetting("ConnectionStrings:Postgres", TestInfrastructure.Postgres);
            builder.UseSetting("ConnectionStrings:RabbitMq", rabbit);
            // The shared instance has migrated the run's database already; production never migrates at start.
            builder.UseSetting("Database:MigrateOnStartup", "false");
            builder.UseSetting("Reconciler:IntervalSeconds", "3600");
            builder.UseSetting("Auth:SigningKey", TestTokens.SigningKey);
            builder.UseSetting("Sealing:MainKey", TestTokens.SealingKey);
            foreach (var (key, value) in settings)
                builder.UseSetting(key, value);
            builder.ConfigureTestServices(collection =>
            {
                // A stop lets attempts in flight finish (up to their timeout) and records them; on a
                // loaded 2-core machine, after a test's long database outage, that once took longer
                // than the host's default 30 s (DatabaseOutageTests, 2026-12-06). A stop that hangs
                // still fails the test, after 90 s.
                collection.Configure<Microsoft.Extensions.Hosting.HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(90));
                if (network is not null) collection.AddSingleton(network);
                if (clock is not null) collection.AddSingleton(clock);
                // Registered after the app's services, so the host calls it first when it stops.
                collection.AddSingleton(stopSignal);
                collection.AddHostedService(sp => sp.GetRequiredService<StopSignal>());
                services?.Invoke(collection);
            });
        });
        try
        {
            factory.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
            factory.StartServer();
            var address = factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
            var instance = new IsolatedDispatcher(factory, owned, used ?? RabbitManagement.VirtualHost, new Uri(address), stopSignal.Begun.Task);
            Live[instance] = true;
            return instance;
        }
        catch
        {
            await factory.DisposeAsync();
            if (owned is not null) await Broker.DeleteVirtualHostAsync(owned);
            throw;
        }
    }

    /// <summary>A client to the instance over a real TCP connection, authenticated as <paramref name="userId"/> (none when null).</summary>
    public HttpClient Client(string? userId)
    {
        var client = new HttpClient { BaseAddress = BaseAddress };
        if (userId is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TestTokens.For(userId));
        return client;
    }

    /// <summary>Publishes an event on this instance's virtual host, as a Notely service would.</summary>
    public async Task PublishAsync(INotelyEvent evt, CancellationToken cancellationToken = default)
    {
        await using var scope = Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<IPublishEndpoint>().Publish(evt, evt.GetType(), cancellationToken);
    }

    /// <summary>
    /// Stops the instance as its host stops in production (attempts in flight finish and are
    /// recorded, retries are handed to the broker), and leaves its virtual host and what waits
    /// there in place.
    /// </summary>
    public async Task StopAsync()
    {
        if (_stopped) return;
        _stopped = true;
        Live.TryRemove(this, out _);
        await _factory.DisposeAsync();
    }

    /// <summary>Stops the instance and removes the virtual host it created (not the shared one, nor one it was given).</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (_vhost is not null) await Broker.DeleteVirtualHostAsync(_vhost);
    }
}

/// <summary>Operator actions on the test broker through its management HTTP API.</summary>
public static class Broker
{
    private static HttpClient Management()
    {
        if (string.IsNullOrEmpty(TestInfrastructure.RabbitManagement))
            Assert.Fail("The RabbitMQ management API is unknown: set WEBHOOKS_RABBIT_MGMT_URL (deploy/test.sh does).");
        var credentials = new Uri(TestInfrastructure.RabbitMq).UserInfo.Split(':', 2).Select(Uri.UnescapeDataString).ToArray();
        var client = new HttpClient { BaseAddress = new Uri(TestInfrastructure.RabbitManagement) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{credentials[0]}:{credentials.ElementAtOrDefault(1)}")));
        return client;
    }

    private static string User => Uri.UnescapeDataString(new Uri(TestInfrastructure.RabbitMq).UserInfo.Split(':', 2)[0]);

    /// <summary>Creates a virtual host named after the run's own and <paramref name="purpose"/>, with full rights for the test user.</summary>
    public static async Task<string> CreateVirtualHostAsync(string purpose)
    {
        var runVhost = Uri.UnescapeDataString(new Uri(TestInfrastructure.RabbitMq).AbsolutePath.Trim('/'));
        var name = $"{(runVhost.Length > 0 ? runVhost : "webhooks-tests")}-{purpose}-{Guid.NewGuid().ToString("N")[..8]}";
        using var client = Management();
        var vhost = Uri.EscapeDataString(name);
        (await client.PutAsJsonAsync($"api/vhosts/{vhost}", new { })).EnsureSuccessStatusCode();
        (await client.PutAsJsonAsync($"api/permissions/{vhost}/{Uri.EscapeDataString(User)}",
            new { configure = ".*", write = ".*", read = ".*" })).EnsureSuccessStatusCode();
        return name;
    }

    /// <summary>Deletes a virtual host and everything in it.</summary>
    public static async Task DeleteVirtualHostAsync(string name)
    {
        using var client = Management();
        var response = await client.DeleteAsync($"api/vhosts/{Uri.EscapeDataString(name)}");
        if (response.StatusCode != HttpStatusCode.NotFound) response.EnsureSuccessStatusCode();
    }
}

/// <summary>The first of the host's lifecycle services to hear that it stops.</summary>
internal sealed class StopSignal : Microsoft.Extensions.Hosting.IHostedLifecycleService
{
    public TaskCompletionSource Begun { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        Begun.TrySetResult();
        return Task.CompletedTask;
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
