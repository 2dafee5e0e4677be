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
    /// <c>payload</c> (cut at <paramref name="truncate"/> bytes when given), <c>payload_bytes</c>
    /// and <c>properties</c> (<c>headers</c>, <c>message_id</c>) as the API shows them.
    /// </summary>
    public static async Task<IReadOnlyList<JsonNode>> PeekAsync(string queue, int count = 500, string? virtualHost = null, int? truncate = null)
    {
        var request = new JsonObject { ["count"] = count, ["ackmode"] = "ack_requeue_true", ["encoding"] = "auto" };
        if (truncate is not null) request["truncate"] = truncate;
        var path = $"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}/get";
        var response = await Http.Value.PostAsJsonAsync(path, request);
        // A queue declared a moment ago (an _error queue on its first fault) can answer 400 until
        // its quorum has a leader: asked again for up to 5 s before it counts as an error.
        for (var i = 0; i < 25 && response.StatusCode == System.Net.HttpStatusCode.BadRequest; i++)
        {
            await Task.Delay(200);
            response = await Http.Value.PostAsJsonAsync(path, request);
        }
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound) return [];
        response.EnsureSuccessStatusCode();
        return [.. (await response.Content.ReadFromJsonAsync<JsonArray>())!.Select(n => n!)];
    }

    /// <summary>Removes every ready message of a queue, as the console's "Purge Messages" does.</summary>
    public static async Task PurgeAsync(string queue, string? virtualHost = null) =>
        (await Http.Value.DeleteAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}/contents"))
        .EnsureSuccessStatusCode();

    /// <summary>Deletes a queue with its messages (its consumers are cancelled), as the console's "Delete Queue" does.</summary>
    public static async Task DeleteQueueAsync(string queue, string? virtualHost = null) =>
        (await Http.Value.DeleteAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}"))
        .EnsureSuccessStatusCode();

    /// <summary>The arguments a queue was declared with (<c>x-message-ttl</c> …); null when it does not exist.</summary>
    public static async Task<JsonObject?> QueueArgumentsAsync(string queue, string? virtualHost = null)
    {
        var response = await Http.Value.GetAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}");
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound) return null;
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["arguments"]!.AsObject();
    }

    /// <summary>
    /// The console's "Move messages" (a queue's page, with the shovel plugins on): a dynamic shovel
    /// named <c>Move from {queue}</c> with exactly the parameters the console's form sends, which
    /// moves the messages the queue holds when it starts to <paramref name="destination"/> and
    /// then deletes itself.
    /// </summary>
    public static async Task MoveMessagesAsync(string queue, string destination, string? virtualHost = null)
    {
        var vhost = virtualHost ?? VirtualHost;
        var uri = "amqp:///" + Uri.EscapeDataString(vhost);
        var response = await Http.Value.PutAsJsonAsync(
            $"api/parameters/shovel/{Uri.EscapeDataString(vhost)}/{Uri.EscapeDataString(MoveShovelName(queue))}",
            new JsonObject
            {
                ["component"] = "shovel",
                ["vhost"] = vhost,
                ["name"] = MoveShovelName(queue),
                ["value"] = new JsonObject
                {
                    ["src-uri"] = uri,
                    ["src-queue"] = queue,
                    ["src-protocol"] = "amqp091",
                    ["src-prefetch-count"] = 1000,
                    ["src-delete-after"] = "queue-length",
                    ["dest-protocol"] = "amqp091",
                    ["dest-uri"] = uri,
                    ["dest-add-forward-headers"] = false,
                    ["ack-mode"] = "on-confirm",
                    ["src-consumer-args"] = new JsonObject(),
                    ["dest-queue"] = destination,
                },
            });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>The name the console gives the shovel that moves a queue's messages.</summary>
    public static string MoveShovelName(string queue) => $"Move from {queue}";

    /// <summary>Whether a dynamic shovel of that name exists (a move shovel deletes itself when done).</summary>
    public static async Task<bool> ShovelExistsAsync(string name, string? virtualHost = null)
    {
        var response = await Http.Value.GetAsync($"api/parameters/shovel/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(name)}");
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound) return false;
        response.EnsureSuccessStatusCode();
        return true;
    }

    /// <summary>
    /// The ready messages and consumers of a queue as the broker counts them now (over AMQP: the
    /// management API's figures lag by its statistics interval, 5 s); null when the queue does not exist.
    /// </summary>
    public static async Task<(uint Messages, uint Consumers)?> CountAsync(string queue, string? virtualHost = null)
    {
        var factory = new RabbitMQ.Client.ConnectionFactory { Uri = new Uri(AmqpUri(virtualHost ?? VirtualHost)) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            var ok = await channel.QueueDeclarePassiveAsync(queue);
            return (ok.MessageCount, ok.ConsumerCount);
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 404)
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="queue"/> has at least one consumer.</summary>
    public static async Task<bool> HasConsumerAsync(string queue, string? virtualHost = null)
    {
        var response = await Http.Value.GetAsync($"api/queues/{Uri.EscapeDataString(virtualHost ?? VirtualHost)}/{Uri.EscapeDataString(queue)}");
        if (!response.IsSuccessStatusCode) return false;
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["consumers"]?.GetValue<int>() > 0;
    }
}
