using System.Net;
using Npgsql;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// An API-only replica on a database that lacks the newest migration (it starts, and its readiness
/// says <c>migrations</c> Unhealthy): a request that needs what the migration adds answers 503 with
/// <c>Retry-After</c> and problem details saying so, not 500; what the older schema has keeps working.
/// </summary>
public sealed class OlderSchemaTests
{
    [Test]
    public async Task A_keyed_create_on_a_database_without_the_idempotency_keys_table_answers_503_with_Retry_After_and_creates_nothing()
    {
        await using var database = await ScratchDatabase.CreateAsync("before_idempotency_keys", migrate: false);
        await database.MigrateAsync("20261207150000_PortalLinkRate");
        await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Dispatcher:Workers"] = "false",
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
        }, sharedBroker: true);
        var user = Events.NewUser();
        using var client = api.Client(user);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/webhooks")
        {
            Content = new StringContent("""{"url":"https://hooks.example.com/older-schema","event_types":["email.received"]}""",
                System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("Idempotency-Key", Guid.NewGuid().ToString());
        using var keyed = await client.SendAsync(request);

        var body = await keyed.Content.ReadAsStringAsync();
        Assert.That(keyed.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
        Assert.That(keyed.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(5)));
        Assert.That(keyed.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That(body, Does.Contain("schema"));
        await using (var connection = new NpgsqlConnection(database.ConnectionString))
        {
            await connection.OpenAsync();
            await using var count = new NpgsqlCommand("SELECT count(*) FROM webhook_subscriptions WHERE user_id = $1", connection) { Parameters = { new() { Value = user } } };
            Assert.That(await count.ExecuteScalarAsync(), Is.Zero, "nothing created");
        }
        // Without the key the older schema has all a create needs.
        using var plain = await client.PostAsync("/api/webhooks", new StringContent(
            """{"url":"https://hooks.example.com/older-schema","event_types":["email.received"]}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.That(plain.StatusCode, Is.EqualTo(HttpStatusCode.Created), await plain.Content.ReadAsStringAsync());
    }
}
