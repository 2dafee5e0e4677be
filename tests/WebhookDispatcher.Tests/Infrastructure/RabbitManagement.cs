using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// The broker's management HTTP API, used the way an operator or a non-.NET publisher would:
/// publish raw bytes to an exchange, look at a queue, add a virtual host. Reads
/// <c>WEBHOOKS_RABBIT_MGMT_URL</c> (set by deploy/test.sh); the credentials and virtual host of
/// the run come from the test broker's amqp:// URI.
/// </summary>
public static class RabbitManagement
{
    private static readonly Lazy<HttpClient> Http = new(() =>
    {
        var url = Environment.GetEnvironmentVariable("WEBHOOKS_RABBIT_MGMT_URL");
        if (string.IsNullOrEmpty(url))
            Assert.Fail("WEBHOOKS_RABBIT_MGMT_URL is not set: run the tests through deploy/test.sh, which points it at the broker's management API.");
        var client = new HttpClient { BaseAddress = new Uri(url!.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(Broker.UserInfo))));
        return client;
    });

    private static Uri Broker => new(TestInfrastructure.RabbitMq);

    /// <summary>The virtual host of this run's dispatcher.</summary>
    public static string VirtualHost => Uri.UnescapeDataString(Broker.AbsolutePath.TrimStart('/')) is { Length: > 0 } v ? v : "/";

    /// <summary>The amqp:// URI of the broker with another virtual host.</summary>
    public static string AmqpUri(string virtualHost) =>
        new UriBuilder(Broker) { Path = "/" + Uri.EscapeDataString(virtualHost) }.Uri.ToString();

    /// <summary>Creates a virtual host the test user may use fully.</summary>
    public static async Task CreateVirtualHostAsync(string name)
    {
        (await Http.Value.PutAsync($"api/vhosts/{Uri.EscapeDataString(name)}", null)).EnsureSuccessStatusCode();
        var user = Uri.UnescapeDataString(Broker.UserInfo.Split(':')[0]);
        (await Http.Value.PutAsJsonAsync($"api/permissions/{Uri.EscapeDataString(name)}/{Uri.EscapeDataString(user)}",
            new { configure = ".*", write = ".*", read = ".*" })).EnsureSuccessStatusCode();
    }

    /// <summary>Deletes a virtual host and everything in it.</summary>
    public static async Task DeleteVirtualHostAsync(string name) =>
        await Http.Value.DeleteAsync($"api/vhosts/{Uri.EscapeDataString(name)}");

    /// <summary>Declares a durable fanout exchange, as MassTransit declares the event exchanges.</summary>
    public static async Task DeclareExchangeAsync(string virtualHost, string exchange) =>
        (await Http.Value.PutAsJsonAsync($"api/exchanges/{Uri.EscapeDataString(virtualHost)}/{Uri.EscapeDataString(exchange)}",
            new { type = "fanout", durable = true })).EnsureSuccessStatusCode();

    /// <summary>Publishes <paramref name="body"/> as is; true when the broker routed it to a queue.</summary>
    public static async Task<bool> PublishAsync(string exchange, string body, string contentType = "application/vnd.masstransit+json",
        string? messageId = null, string? virtualHost = null)
    {
        var properties = new JsonObject { ["content_type"] = contentType, ["delivery_mode"] = 2 };
        if (messageId is not null) properties["message_id"] = messageId;
        var response = await Http.Value.PostAsJsonAsync(
            $"api/exchanges/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(exchange)}/publish",
            new JsonObject { ["properties"] = properties, ["routing_key"] = "", ["payload"] = body, ["payload_encoding"] = "string" });
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["routed"]!.GetValue<bool>();
    }

    /// <summary>
    /// Up to <paramref name="count"/> messages of a queue, left in it (requeued): each with
    /// <c>payload</c> and <c>properties</c> (<c>headers</c>, <c>message_id</c>) as the API shows them.
    /// </summary>
    public static async Task<IReadOnlyList<JsonNode>> PeekAsync(string queue, int count = 500, string? virtualHost = null)
    {
        var response = await Http.Value.PostAsJsonAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}/get",
            new { count, ackmode = "ack_requeue_true", encoding = "auto" });
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound) return [];
        response.EnsureSuccessStatusCode();
        return [.. (await response.Content.ReadFromJsonAsync<JsonArray>())!.Select(n => n!)];
    }

    /// <summary>Whether <paramref name="queue"/> has at least one consumer.</summary>
    public static async Task<bool> HasConsumerAsync(string queue, string? virtualHost = null)
    {
        var response = await Http.Value.GetAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}");
        if (!response.IsSuccessStatusCode) return false;
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["consumers"]?.GetValue<int>() > 0;
    }
}
