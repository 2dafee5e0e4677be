using System.Collections.Concurrent;
using System.Text.Json;
using System.Text;
using MassTransit;
using Notely.Events;

namespace Notely.WebhookDemo;

/// <summary>
/// The quick-start demo against a running dispatcher: registers two subscriptions for a demo user
/// through the management API (token in DEMO_TOKEN), starts a receiver on 127.0.0.1 that
/// verifies both signatures of every POST, publishes sample events on RabbitMQ through the
/// contracts package, and prints what arrived. One endpoint answers 503 once, to show a retry.
/// Exit code 0 when every expected delivery arrived with valid signatures.
/// </summary>
internal static class Program
{
    private const string ReceiverUrl = "http://127.0.0.1:5099";

    private static async Task<int> Main()
    {
        var apiUrl = Environment.GetEnvironmentVariable("DEMO_API_URL") ?? "http://127.0.0.1:5080";
        var token = Environment.GetEnvironmentVariable("DEMO_TOKEN")
                    ?? throw new InvalidOperationException("DEMO_TOKEN is not set; deploy/demo.sh creates one.");
        var userId = Environment.GetEnvironmentVariable("DEMO_USER_ID") ?? "demo-user";
        var rabbit = new Uri(Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq") ?? "amqp://guest:guest@127.0.0.1:55672/");
        var secrets = new Dictionary<string, string>();
        var received = new ConcurrentQueue<string>();
        var verifiedAll = true;
        var flakyCalls = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var web = WebApplication.CreateSlimBuilder();
        web.WebHost.UseUrls(ReceiverUrl);
        web.Logging.ClearProviders();
        var receiver = web.Build();
        receiver.MapPost("/{name}", async (string name, HttpRequest request) =>
        {
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer);
            var body = buffer.ToArray();
            var secret = secrets[name];
            var legacy = WebhookVerifier.VerifyLegacy(secret, body, request.Headers["X-Webhook-Signature"]);
            var standard = WebhookVerifier.VerifyStandard(secret, request.Headers["webhook-id"], request.Headers["webhook-timestamp"],
                request.Headers["webhook-signature"], body, DateTimeOffset.UtcNow);
            verifiedAll &= legacy && standard;
            var flaky = name == "flaky" && Interlocked.Increment(ref flakyCalls) == 1;
            var line = $"[{clock.Elapsed.TotalSeconds,5:0.0} s] /{name} got {request.Headers["X-Webhook-Event"]} delivery {request.Headers["X-Webhook-Delivery"]}: " +
                       $"X-Webhook-Signature {(legacy ? "valid" : "INVALID")}, webhook-signature {(standard ? "valid" : "INVALID")}" +
                       (flaky ? " -> answering 503 to show a retry" : " -> 200");
            Console.WriteLine(line);
            Console.WriteLine("          body: " + Encoding.UTF8.GetString(body));
            if (!flaky) received.Enqueue(name);
            return flaky ? Results.StatusCode(503) : Results.Ok();
        });
        await receiver.StartAsync();

        // Subscribe through the management API, authenticated as the demo user.
        using var api = new HttpClient { BaseAddress = new Uri(apiUrl) };
        api.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        foreach (var (name, types) in new[] { ("inbox", new[] { "email.received", "task.completed" }), ("flaky", new[] { "task.completed" }) })
        {
            var response = await api.PostAsJsonAsync("/api/webhooks", new { url = $"{ReceiverUrl}/{name}", event_types = types, description = "quick-start demo" });
            var created = await response.Content.ReadFromJsonAsync<JsonElement>();
            if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"POST /api/webhooks answered {(int)response.StatusCode}: {created}");
            secrets[name] = created.GetProperty("secret").GetString()!;
            Console.WriteLine($"POST /api/webhooks -> {(int)response.StatusCode} {response.Headers.Location}");
        }
        Console.WriteLine($"Subscribed {ReceiverUrl}/inbox (email.received, task.completed) and {ReceiverUrl}/flaky (task.completed) for user {userId}");

        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            var user = rabbit.UserInfo.Split(':', 2);
            cfg.Host(rabbit.Host, (ushort)rabbit.Port, "/", h =>
            {
                h.Username(Uri.UnescapeDataString(user[0]));
                h.Password(Uri.UnescapeDataString(user[1]));
            });
        });
        await bus.StartAsync();
        try
        {
            var now = DateTimeOffset.UtcNow;
            await bus.Publish(new EmailReceived
            {
                EventId = Guid.NewGuid(), UserId = userId, OccurredAt = now, EmailId = "em_1001", Subject = "Lunch on Friday?",
                From = "alice@example.com", To = ["you@example.com"], Date = now, BodyPreview = "Are you free at noon?",
            });
            await bus.Publish(new TaskCompleted
            {
                EventId = Guid.NewGuid(), UserId = userId, OccurredAt = now, TaskId = "task_42", Title = "Send the quarterly report",
                Description = "Q3 numbers", CompletedAt = now, DueDate = now.AddDays(1),
            });
            Console.WriteLine("Published EmailReceived and TaskCompleted on RabbitMQ; waiting for the deliveries…");

            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (received.Count < 3 && DateTime.UtcNow < deadline)
                await Task.Delay(200);
        }
        finally
        {
            await bus.StopAsync();
            await receiver.StopAsync();
        }

        var ok = received.Count == 3 && verifiedAll;
        Console.WriteLine(ok
            ? "OK: 3 deliveries arrived (the flaky one after a retry 2 s later), every signature verified."
            : $"FAILED: {received.Count} of 3 deliveries arrived; signatures all valid: {verifiedAll}.");
        return ok ? 0 : 1;
    }
}
