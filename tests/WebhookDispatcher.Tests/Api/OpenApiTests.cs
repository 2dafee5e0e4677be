using System.Text.Json.Nodes;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

[Parallelizable(ParallelScope.All)]
public sealed class OpenApiTests
{
    private static async Task<(JsonNode Document, string Text)> DocumentAsync()
    {
        using var client = TestTokens.Client(null);
        var text = await (await client.GetAsync("/openapi/v1.json")).Content.ReadAsStringAsync();
        return (JsonNode.Parse(text)!, text);
    }

    [Test]
    public async Task The_OpenAPI_document_passes_the_Redocly_linter_with_no_problem_at_all()
    {
        var (_, text) = await DocumentAsync();
        var file = Path.Combine(Path.GetTempPath(), $"openapi-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, text);
        if (Environment.GetEnvironmentVariable("OPENAPI_DUMP") is { Length: > 0 } dump) await File.WriteAllTextAsync(dump, text);
        try
        {
            await using var lint = ChildProcess.Start(Repo.Path("tests/tools/node_modules/.bin/redocly"),
                ["lint", file, "--config", Repo.Path("tests/tools/redocly.yaml"), "--format", "stylish"], Repo.Path("tests/tools"),
                new Dictionary<string, string> { ["REDOCLY_TELEMETRY"] = "off", ["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true" });
            Assert.That(await lint.WaitForExitAsync(TimeSpan.FromSeconds(120)), Is.True, lint.Output);
            Assert.That(lint.ExitCode, Is.Zero, lint.Output);
            Assert.That(lint.Output, Does.Contain("Woohoo!").Or.Contain("0 errors"), lint.Output);
            Assert.That(lint.Output, Does.Not.Match(@"\b(error|warning)\b.*\(\w[\w-]+\)"), lint.Output);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Test]
    public async Task Every_route_lists_exactly_the_status_codes_it_can_answer()
    {
        var (doc, _) = await DocumentAsync();
        // 503: every route that needs the database answers it while PostgreSQL is away (ApiOutageTests).
        var expected = new Dictionary<(string Method, string Path), string[]>
        {
            [("get", "/api/webhooks/event-types")] = ["200", "401"],
            [("get", "/api/webhooks/event-types/{name}")] = ["200", "401", "404"],
            // 403: a read-only portal session, on every route that changes something (PortalBrowserTests).
            [("post", "/api/webhooks")] = ["201", "400", "401", "403", "409", "413", "415", "422", "429", "503"],
            [("get", "/api/webhooks")] = ["200", "400", "401", "503"],
            [("get", "/api/webhooks/{id}")] = ["200", "401", "404", "503"],
            [("patch", "/api/webhooks/{id}")] = ["200", "400", "401", "403", "404", "413", "415", "429", "503"],
            [("delete", "/api/webhooks/{id}")] = ["204", "401", "403", "404", "503"],
            [("post", "/api/webhooks/{id}/test")] = ["200", "401", "403", "404", "429", "503"],
            // 403: a read-only portal session (every POST); 422: the template fails on the example.
            [("post", "/api/webhooks/{id}/preview")] = ["200", "400", "401", "403", "404", "413", "415", "422", "429", "503"],
            [("get", "/api/webhooks/stats")] = ["200", "400", "401", "503"],
            [("get", "/api/webhooks/stats/timeline")] = ["200", "400", "401", "503"],
            [("get", "/api/webhooks/{id}/deliveries")] = ["200", "400", "401", "404", "503"],
            [("get", "/api/webhooks/{id}/deliveries/{deliveryId}")] = ["200", "401", "404", "503"],
            [("post", "/api/webhooks/{id}/rotate-secret")] = ["200", "400", "401", "403", "404", "409", "422", "503"],
            [("post", "/api/webhooks/{id}/deliveries/{deliveryId}/retry")] = ["202", "401", "403", "404", "409", "503"],
            [("post", "/api/webhooks/{id}/recover")] = ["202", "400", "401", "403", "404", "409", "413", "415", "503"],
            [("post", "/api/webhooks/portal-sessions")] = ["201", "400", "401", "403", "413", "415", "429", "503"],
            [("post", "/api/operator/portal-sessions")] = ["201", "400", "401", "403", "413", "415", "429", "503"],
            [("post", "/portal/session")] = ["200", "400", "401", "413", "415", "503"],
            // 403: a JWT (only a portal session has a session to end).
            [("delete", "/portal/session")] = ["204", "401", "403", "503"],
            [("get", "/api/operator/deliveries")] = ["200", "400", "401", "403", "503"],
            [("get", "/api/operator/deliveries/{deliveryId}")] = ["200", "401", "403", "404", "503"],
            [("post", "/api/operator/deliveries/{deliveryId}/retry")] = ["202", "401", "403", "404", "409", "503"],
            [("get", "/api/operator/webhooks")] = ["200", "400", "401", "403", "503"],
            [("get", "/api/operator/audit")] = ["200", "400", "401", "403", "503"],
            [("post", "/api/operator/webhooks/{id}/recover")] = ["202", "400", "401", "403", "404", "409", "413", "415", "503"],
        };
        var actual = doc["paths"]!.AsObject()
            .SelectMany(p => p.Value!.AsObject().Select(o => (Key: (o.Key, p.Key), Codes: o.Value!["responses"]!.AsObject().Select(r => r.Key).Order().ToArray())))
            .ToDictionary(x => x.Key, x => x.Codes);

        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        Assert.That(doc["paths"]!["/portal/session"]!["post"]!["security"]!.AsArray(), Is.Empty, "opening a portal link needs no credential");
        Assert.Multiple(() =>
        {
            foreach (var (route, codes) in expected)
                Assert.That(actual.GetValueOrDefault(route), Is.EqualTo(codes), $"{route.Method.ToUpperInvariant()} {route.Path}");
        });
    }

    [TestCase("/api/webhooks")]
    [TestCase("/api/webhooks/{id}/rotate-secret")]
    public async Task The_Idempotency_Key_header_is_documented_once_as_an_optional_string(string path)
    {
        var (doc, _) = await DocumentAsync();

        var keys = doc["paths"]![path]!["post"]!["parameters"]!.AsArray().Where(p => p!["name"]!.GetValue<string>() == "Idempotency-Key").ToList();
        Assert.That(keys, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(keys[0]!["in"]!.GetValue<string>(), Is.EqualTo("header"));
            Assert.That(keys[0]!["required"]?.GetValue<bool>() ?? false, Is.False);
            Assert.That(keys[0]!["schema"]!["type"]!.GetValue<string>(), Is.EqualTo("string"));
            Assert.That(keys[0]!["schema"]!["maxLength"]!.GetValue<int>(), Is.EqualTo(255));
        });
    }

    [Test]
    public async Task The_429_of_the_test_endpoint_documents_its_Retry_After_header_and_stats_document_their_window()
    {
        var (doc, _) = await DocumentAsync();

        var tooMany = doc["paths"]!["/api/webhooks/{id}/test"]!["post"]!["responses"]!["429"]!;
        var window = doc["paths"]!["/api/webhooks/stats"]!["get"]!["parameters"]!.AsArray().Single(p => p!["name"]!.GetValue<string>() == "window")!;
        Assert.Multiple(() =>
        {
            Assert.That(tooMany["headers"]!["Retry-After"]!["schema"]!["type"]!.GetValue<string>(), Is.EqualTo("integer"));
            Assert.That(tooMany["headers"]!["Retry-After"]!["required"]!.GetValue<bool>(), Is.True);
            Assert.That(tooMany["content"]!["application/problem+json"], Is.Not.Null);
            Assert.That(window["schema"]!["pattern"]!.GetValue<string>(), Is.EqualTo(WebhookDispatcher.Subscriptions.DeliveryStatsApi.WindowPattern));
            Assert.That(window["schema"]!["default"]!.GetValue<string>(), Is.EqualTo("24h"));
            Assert.That(doc["components"]!["schemas"]!["DeliveryStatsResponse"]!["properties"]!["average_delivery_time_ms"]!["description"]!
                .GetValue<string>(), Does.Contain("creation"));
        });
    }

    [Test]
    public async Task Creating_documents_the_subscription_limit_and_the_creation_rate_with_their_values()
    {
        var (doc, _) = await DocumentAsync();

        var responses = doc["paths"]!["/api/webhooks"]!["post"]!["responses"]!;
        Assert.Multiple(() =>
        {
            Assert.That(responses["409"]!["description"]!.GetValue<string>(), Does.Contain("200 subscriptions"), "the default MaxPerUser");
            Assert.That(responses["409"]!["content"]!["application/problem+json"], Is.Not.Null);
            Assert.That(responses["429"]!["description"]!.GetValue<string>(), Does.Contain("30 subscriptions in the last 60 seconds"),
                "the default CreatesPerMinute");
            Assert.That(responses["429"]!["headers"]!["Retry-After"]!["required"]!.GetValue<bool>(), Is.True);
            Assert.That(responses["429"]!["headers"]!["Retry-After"]!["schema"]!["maximum"]!.GetValue<int>(), Is.EqualTo(60));
        });
    }

    [Test]
    public async Task The_document_states_the_event_payload_cap()
    {
        var (doc, _) = await DocumentAsync();

        Assert.That(doc["info"]!["description"]!.GetValue<string>(),
            Does.Contain("at most 262,144 bytes of UTF-8 JSON (Delivery:MaxEventBytes)"));
    }

    [Test]
    public async Task Every_field_and_parameter_carries_its_range_enum_or_format()
    {
        var (doc, _) = await DocumentAsync();
        var problems = new List<string>();
        foreach (var (name, schema) in doc["components"]!["schemas"]!.AsObject())
        {
            if (name is "ProblemDetails" or "HttpValidationProblemDetails" || schema!["properties"] is not JsonObject properties) continue;
            foreach (var (field, property) in properties)
            {
                var types = property!["type"] is JsonArray a ? a.Select(t => t!.GetValue<string>()).ToArray() : [property["type"]?.GetValue<string>() ?? "ref"];
                if (types.Contains("integer") && (property["minimum"] is null || property["format"] is null))
                    problems.Add($"{name}.{field}: integer without minimum or format");
                if (types.Contains("number") && property["minimum"] is null) problems.Add($"{name}.{field}: number without minimum");
                if (types.Contains("string") && property["format"] is null && property["enum"] is null && property["pattern"] is null
                    && property["maxLength"] is null && field is not ("title" or "error" or "error_message" or "response_excerpt"))
                    problems.Add($"{name}.{field}: string without format, enum, pattern or maxLength");
                if (field.EndsWith("_at", StringComparison.Ordinal) && property["format"]?.GetValue<string>() != "date-time")
                    problems.Add($"{name}.{field}: timestamp without format date-time");
            }
        }
        foreach (var (path, operations) in doc["paths"]!.AsObject())
        foreach (var (method, operation) in operations!.AsObject())
        foreach (var parameter in operation!["parameters"]?.AsArray() ?? [])
        {
            var schema = parameter!["schema"]!;
            if (schema["type"]?.GetValue<string>() == "string" && schema["enum"] is null && schema["format"] is null && schema["pattern"] is null)
                problems.Add($"{method} {path} {parameter["name"]}: free string");
            if (parameter["description"] is null) problems.Add($"{method} {path} {parameter["name"]}: no description");
        }

        Assert.That(problems, Is.Empty);
        var create = doc["components"]!["schemas"]!["CreateSubscriptionRequest"]!;
        var limit = doc["paths"]!["/api/webhooks"]!["get"]!["parameters"]!.AsArray().Single(p => p!["name"]!.GetValue<string>() == "limit")!["schema"]!;
        Assert.Multiple(() =>
        {
            Assert.That(create["required"]!.AsArray().Select(r => r!.GetValue<string>()), Is.EquivalentTo(new[] { "url", "event_types" }));
            Assert.That(create["additionalProperties"]?.GetValue<bool>(), Is.False);
            Assert.That(create["properties"]!["retry_count"]!["maximum"]!.GetValue<int>(), Is.EqualTo(10));
            Assert.That(create["properties"]!["event_types"]!["items"]!["enum"]!.AsArray(), Has.Count.EqualTo(17));
            Assert.That(limit["maximum"]!.GetValue<int>(), Is.EqualTo(100));
            Assert.That(limit["type"]!.GetValue<string>(), Is.EqualTo("integer"));
        });
    }

    [Test]
    public async Task Batch_max_bytes_ordering_and_the_delivery_lists_event_type_say_what_the_API_accepts()
    {
        var (doc, _) = await DocumentAsync();
        var schemas = doc["components"]!["schemas"]!;
        var maxBytes = schemas["SubscriptionBatch"]!["properties"]!["max_bytes"]!;
        var deliveryEventType = doc["paths"]!["/api/webhooks/{id}/deliveries"]!["get"]!["parameters"]!.AsArray()
            .Single(p => p!["name"]!.GetValue<string>() == "event_type")!["schema"]!;
        var listEventType = doc["paths"]!["/api/webhooks"]!["get"]!["parameters"]!.AsArray()
            .Single(p => p!["name"]!.GetValue<string>() == "event_type")!["schema"]!;
        Assert.Multiple(() =>
        {
            Assert.That(maxBytes["minimum"]!.GetValue<int>(), Is.EqualTo(1024));
            Assert.That(maxBytes["maximum"]!.GetValue<int>(), Is.EqualTo(262_144));
            foreach (var request in new[] { "CreateSubscriptionRequest", "UpdateSubscriptionRequest" })
            {
                var ordering = schemas[request]!["properties"]!["ordering"]!;
                Assert.That(ordering["type"]!.ToJsonString(), Is.EqualTo("\"string\""), $"{request}.ordering is not nullable: null answers 400");
                Assert.That(ordering["enum"]!.AsArray().Select(v => v!.GetValue<string>()), Is.EquivalentTo(new[] { "none", "per_key", "strict" }));
            }
            Assert.That(deliveryEventType["enum"]!.AsArray().Select(v => v!.GetValue<string>()), Does.Contain("batch"));
            Assert.That(listEventType["enum"]!.AsArray().Select(v => v!.GetValue<string>()), Does.Not.Contain("batch"), "subscriptions never have event type batch");
        });
    }
}
