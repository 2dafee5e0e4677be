using System.Net;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>Every validation rule, on create and on update alike; a rejected request changes nothing.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class ValidationTests
{
    private static IEnumerable<TestCaseData> BadFields()
    {
        (string Name, string Json, string Field)[] cases =
        [
            ("relative url", """{"url":"/hooks"}""", "url"),
            ("ftp url", """{"url":"ftp://example.com/x"}""", "url"),
            ("url with user info", """{"url":"https://user:pw@example.com/x"}""", "url"),
            ("url too long", $$"""{"url":"https://example.com/{{new string('a', 2048)}}"}""", "url"),
            ("url not a string", """{"url":42}""", "url"),
            ("url null", """{"url":null}""", "url"),
            ("empty event_types", """{"event_types":[]}""", "event_types"),
            ("unknown event type", """{"event_types":["email.exploded"]}""", "event_types"),
            ("duplicate event type", """{"event_types":["email.received","email.received"]}""", "event_types"),
            ("event_types not an array", """{"event_types":"email.received"}""", "event_types"),
            ("event type not a string", """{"event_types":[1]}""", "event_types"),
            ("retry_count too big", """{"retry_count":11}""", "retry_count"),
            ("retry_count negative", """{"retry_count":-1}""", "retry_count"),
            ("retry_count as string", """{"retry_count":"3"}""", "retry_count"),
            ("retry_count as boolean", """{"retry_count":true}""", "retry_count"),
            ("retry_count fractional", """{"retry_count":2.5}""", "retry_count"),
            ("timeout_seconds zero", """{"timeout_seconds":0}""", "timeout_seconds"),
            ("timeout_seconds too big", """{"timeout_seconds":61}""", "timeout_seconds"),
            ("timeout_seconds as string", """{"timeout_seconds":"10"}""", "timeout_seconds"),
            ("description not a string", """{"description":5}""", "description"),
            ("description too long", $$"""{"description":"{{new string('d', 1025)}}"}""", "description"),
            ("unknown field", """{"secret":"whsec_mine"}""", "secret"),
        ];
        foreach (var (name, json, field) in cases)
        {
            yield return new TestCaseData(true, json, field).SetName($"POST rejects {name}");
            yield return new TestCaseData(false, json, field).SetName($"PATCH rejects {name}");
        }
    }

    private const string Valid = """{"url":"https://hooks.example.com/v","event_types":["task.created"]}""";

    [TestCaseSource(nameof(BadFields))]
    public async Task A_bad_field_answers_400_naming_it_and_stores_nothing(bool create, string json, string field)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var body = JsonNode.Parse(json)!.AsObject();
        JsonNode? existing = null;
        if (create)
        {
            // A complete body except for the bad field.
            var full = JsonNode.Parse(Valid)!.AsObject();
            foreach (var (key, value) in body) full[key] = value?.DeepClone();
            body = full;
        }
        else existing = await client.CreateAsync("https://hooks.example.com/original", ["email.received"], retryCount: 2, timeoutSeconds: 5);

        var response = create
            ? await client.PostJsonAsync("/api/webhooks", body.ToJsonString())
            : await client.PatchJsonAsync($"/api/webhooks/{existing!.Id()}", body.ToJsonString());

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { field }));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().Where(s => s.UserId == user).ToListAsync());
        if (create) Assert.That(stored, Is.Empty);
        else
        {
            var s = stored.Single();
            Assert.Multiple(() =>
            {
                Assert.That(s.Url, Is.EqualTo("https://hooks.example.com/original"));
                Assert.That(s.EventTypes, Is.EqualTo(new[] { "email.received" }));
                Assert.That(s.RetryCount, Is.EqualTo(2));
                Assert.That(s.TimeoutSeconds, Is.EqualTo(5));
                Assert.That(s.Description, Is.Null);
                Assert.That(s.IsActive, Is.True);
                Assert.That(s.UpdatedAt, Is.EqualTo(s.CreatedAt));
            });
        }
    }

    [Test]
    public async Task Every_bad_field_is_named_at_once()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.PostJsonAsync("/api/webhooks", """{"url":"nope","event_types":[],"retry_count":"x","timeout_seconds":99,"extra":1}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "url", "event_types", "retry_count", "timeout_seconds", "extra" }));
    }

    [TestCase("""{"event_types":["email.received"]}""", "url")]
    [TestCase("""{"url":"https://hooks.example.com/x"}""", "event_types")]
    [TestCase("""{"url":"https://hooks.example.com/x","event_types":["email.received"],"is_active":false}""", "is_active")]
    public async Task Create_requires_url_and_event_types_and_takes_no_is_active(string json, string field)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.PostJsonAsync("/api/webhooks", json);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { field }));
    }

    [TestCase("[1,2]")]
    [TestCase("\"text\"")]
    [TestCase("{\"url\":")]
    public async Task A_body_that_is_not_a_JSON_object_answers_400(string json)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.PostJsonAsync("/api/webhooks", json);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task Patch_with_is_active_not_a_boolean_is_rejected()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync("https://hooks.example.com/x", ["email.received"]);

        var response = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", """{"is_active":"no"}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "is_active" }));
    }
}
