using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Benchmarks;

/// <summary>
/// One HTTP request per measured iteration (RunStrategy.Monitoring, job in BenchmarkEntry), over real loopback sockets
/// (Kestrel) to the whole service on PostgreSQL and RabbitMQ, so the percentiles are request
/// latencies as a client sees them.
/// </summary>
[MinColumn, MaxColumn, MedianColumn]
public class ApiBenchmarks
{
    private const string SigningKey = "benchmark-signing-key-0123456789-0123456789";
    private WebApplicationFactory<Program> _factory = null!;
    private HttpClient _client = null!;
    private Guid _one;

    [GlobalSetup]
    public async Task Setup()
    {
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseEnvironment("Benchmark");
            b.UseSetting("ConnectionStrings:Postgres", Environment.GetEnvironmentVariable("ConnectionStrings__Postgres"));
            b.UseSetting("ConnectionStrings:RabbitMq", Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq"));
            b.UseSetting("Database:MigrateOnStartup", "true");
            b.UseSetting("Auth:SigningKey", SigningKey);
            b.UseSetting("Sealing:MainKey", "YmVuY2htYXJrLW1haW4ta2V5LXNlYWxpbmctMzItYnk=");
            b.UseSetting("Logging:LogLevel:Default", "Warning");
            // One user creates thousands here (setup, warm-up, iterations): the per-user limits
            // stay on, at their largest, so each create still pays for counting them.
            b.UseSetting("Subscriptions:MaxPerUser", "100000");
            b.UseSetting("Subscriptions:CreatesPerMinute", "100000");
        });
        _factory.UseKestrel(0);
        _factory.StartServer();
        _client = _factory.CreateClient();
        var user = "bench-" + Guid.NewGuid().ToString("N")[..8];
        _client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = SigningKey }, user, TimeSpan.FromHours(2)));
        for (var i = 0; i < 100; i++)
            _one = await CreateOne();
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        _client.Dispose();
        await _factory.DisposeAsync();
    }

    private async Task<Guid> CreateOne()
    {
        var response = await _client.PostAsJsonAsync("/api/webhooks",
            new { url = "https://hooks.example.com/bench", event_types = new[] { "email.received", "task.completed" }, retry_count = 3 });
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
    }

    /// <summary>POST /api/webhooks.</summary>
    [Benchmark]
    public Task<Guid> Create() => CreateOne();

    /// <summary>GET /api/webhooks/{id}.</summary>
    [Benchmark]
    public async Task<int> Get()
    {
        using var response = await _client.GetAsync($"/api/webhooks/{_one}");
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadAsByteArrayAsync()).Length;
    }

    /// <summary>GET /api/webhooks?limit=100: a page of 100 subscriptions with the total.</summary>
    [Benchmark]
    public async Task<int> List100()
    {
        using var response = await _client.GetAsync("/api/webhooks?limit=100");
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadAsByteArrayAsync()).Length;
    }
}
