using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace WebhookDispatcher.Tests.Api;

/// <summary>Small JSON helpers over HttpClient for the API tests.</summary>
public static class ApiClient
{
    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient client, string path, string json) =>
        client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    public static Task<HttpResponseMessage> PatchJsonAsync(this HttpClient client, string path, string json) =>
        client.PatchAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    public static async Task<JsonNode> JsonAsync(this HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync()) ?? throw new InvalidOperationException("empty body");

    /// <summary>Creates a subscription through the API and returns its JSON (with the secret).</summary>
    public static async Task<JsonNode> CreateAsync(this HttpClient client, string url, string[] eventTypes, int? retryCount = null, int? timeoutSeconds = null)
    {
        var body = new JsonObject { ["url"] = url, ["event_types"] = new JsonArray([.. eventTypes.Select(e => JsonValue.Create(e))]) };
        if (retryCount is { } r) body["retry_count"] = r;
        if (timeoutSeconds is { } t) body["timeout_seconds"] = t;
        var response = await client.PostAsJsonAsync("/api/webhooks", body);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"create failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return await response.JsonAsync();
    }

    public static Guid Id(this JsonNode node) => node["id"]!.GetValue<Guid>();

    public static string[] ErrorFields(this JsonNode problem) =>
        problem["errors"]?.AsObject().Select(p => p.Key).ToArray() ?? [];

    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web);
}
