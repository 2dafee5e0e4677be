using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using Npgsql;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Shaping;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// Payload filters: each operator, as PostgreSQL evaluates it in the fan-out (<c>payload::jsonb @@ filter_path</c>),
/// selects exactly the example payloads an independent reading of the documented rules selects,
/// across the 17 event types; bad filters answer 400 naming the part, and change nothing.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class FilterTests
{
    private static readonly IReadOnlyList<(string Type, JsonNode Payload)> Examples =
        [.. EventCatalog.All.Select(t => (t.Name, EventSchemas.ExamplePayload(t)))];

    /// <summary>The values at a dotted path as the docs define them: <c>name[]</c> and an array reached at the end stand for their elements.</summary>
    private static IEnumerable<JsonNode?> At(JsonNode payload, string path)
    {
        IEnumerable<JsonNode?> current = [payload];
        foreach (var segment in path.Split('.'))
        {
            var name = segment.TrimEnd('[', ']');
            current = current.SelectMany(Elements)
                .Where(n => n is JsonObject o && o.ContainsKey(name)).Select(n => n!.AsObject()[name]).ToList();
        }
        return current.SelectMany(Elements).ToList();
    }

    private static IEnumerable<JsonNode?> Elements(JsonNode? n) => n is JsonArray a ? a : new[] { n };

    private static bool Any(JsonNode p, string path, Func<JsonNode?, bool> test) => At(p, path).Any(test);
    private static string? Text(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;
    private static decimal? Number(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<decimal>() : null;
    private static DateTimeOffset? Time(JsonNode? n) =>
        Text(n) is { } t && t.Length == 24 && DateTimeOffset.TryParse(t, null, System.Globalization.DateTimeStyles.AssumeUniversal, out var d) ? d : null;

    private static IEnumerable<TestCaseData> Operators()
    {
        var t10 = new DateTimeOffset(2026, 11, 30, 10, 0, 0, TimeSpan.Zero);
        (string Name, string Filter, Func<JsonNode, bool> Oracle)[] cases =
        [
            ("equality by value", """{"event_type": "task.completed"}""", p => Text(p["event_type"]) == "task.completed"),
            ("$eq", """{"data.source": {"$eq": "gmail"}}""", p => Any(p, "data.source", n => Text(n) == "gmail")),
            ("$eq null", """{"data.location": {"$eq": null}}""", p => Any(p, "data.location", n => n is null)),
            ("$ne", """{"event_type": {"$ne": "task.completed"}}""", p => Text(p["event_type"]) != "task.completed"),
            ("$in", """{"event_type": {"$in": ["email.received", "email.sent", "no.such"]}}""",
                p => Text(p["event_type"]) is "email.received" or "email.sent"),
            ("$nin", """{"event_type": {"$nin": ["email.received", "email.sent"]}}""", p => Text(p["event_type"]) is not ("email.received" or "email.sent")),
            ("any element with []", """{"data.to[]": "carol@example.com"}""", p => Any(p, "data.to[]", n => Text(n) == "carol@example.com")),
            ("$in over elements", """{"data.attendees[]": {"$in": ["carol@example.com", "dan@example.com"]}}""",
                p => Any(p, "data.attendees[]", n => Text(n) is "carol@example.com" or "dan@example.com")),
            ("$gt number", """{"data.items_indexed": {"$gt": 41}}""", p => Any(p, "data.items_indexed", n => Number(n) > 41)),
            ("$gte number", """{"data.size_bytes": {"$gte": 1048576}}""", p => Any(p, "data.size_bytes", n => Number(n) >= 1048576)),
            ("$lt number", """{"data.duration_seconds": {"$lt": 13}}""", p => Any(p, "data.duration_seconds", n => Number(n) < 13)),
            ("$lte and $gt on one path", """{"data.items_synced": {"$gt": 0, "$lte": 42}}""", p => Any(p, "data.items_synced", n => Number(n) is > 0 and <= 42)),
            ("$gt timestamp with an offset", """{"data.due_date": {"$gt": "2026-11-30T11:00:00+01:00"}}""", p => Any(p, "data.due_date", n => Time(n) > t10)),
            ("$lt timestamp", """{"data.starts_at": {"$lt": "2026-11-30T11:30:00Z"}}""", p => Any(p, "data.starts_at", n => Time(n) < t10.AddMinutes(90))),
            ("$exists true", """{"data.changed_fields": {"$exists": true}}""", p => p["data"]!.AsObject().ContainsKey("changed_fields")),
            ("$exists false", """{"data.title": {"$exists": false}}""", p => !p["data"]!.AsObject().ContainsKey("title")),
            ("$prefix", """{"event_type": {"$prefix": "calendar."}}""", p => Text(p["event_type"])!.StartsWith("calendar.", StringComparison.Ordinal)),
            ("$contains on elements", """{"data.changed_fields[]": {"$contains": "due"}}""", p => Any(p, "data.changed_fields[]", n => Text(n)?.Contains("due") == true)),
            ("$contains with regex characters taken literally", """{"event_type": {"$contains": "."}}""", p => true),
            ("$and", """{"$and": [{"event_type": {"$prefix": "task."}}, {"data.due_date": {"$exists": true}}]}""",
                p => Text(p["event_type"])!.StartsWith("task.") && p["data"]!.AsObject().ContainsKey("due_date")),
            ("$or", """{"$or": [{"event_type": "user.created"}, {"data.to[]": {"$exists": true}}]}""",
                p => Text(p["event_type"]) == "user.created" || p["data"]!.AsObject().ContainsKey("to")),
            ("$not", """{"$not": {"event_type": {"$prefix": "email."}}}""", p => !Text(p["event_type"])!.StartsWith("email.")),
            ("several paths all hold", """{"event_type": {"$prefix": "indexing."}, "data.job_id": {"$exists": true}, "data.error": {"$exists": false}}""",
                p => Text(p["event_type"])!.StartsWith("indexing.") && !p["data"]!.AsObject().ContainsKey("error")),
            ("a comparison never matches another type", """{"data.title": {"$gt": 5}}""", p => false),
        ];
        foreach (var (name, filter, oracle) in cases)
            yield return new TestCaseData(filter, oracle).SetName($"Filter {name} selects exactly its events");
    }

    [TestCaseSource(nameof(Operators))]
    public async Task A_filter_selects_exactly_the_example_payloads_its_rules_select(string filter, Func<JsonNode, bool> oracle)
    {
        var compiled = PayloadFilter.Compile(JsonDocument.Parse(filter).RootElement);
        Assert.That(compiled.Errors, Is.Empty);

        // The fan-out's own predicate, on the payloads exactly as delivered.
        var db = Dispatcher.Services.GetRequiredService<NpgsqlDataSource>();
        await using var cmd = db.CreateCommand("""
            SELECT t.name FROM unnest($1::text[], $2::text[]) AS t(name, payload)
            WHERE t.payload::jsonb @@ $3::jsonpath
            """);
        cmd.Parameters.Add(new() { Value = Examples.Select(e => e.Type).ToArray() });
        cmd.Parameters.Add(new() { Value = Examples.Select(e => e.Payload.ToJsonString(WebhookPayload.JsonOptions)).ToArray() });
        cmd.Parameters.Add(new() { Value = compiled.JsonPath! });
        var selected = new List<string>();
        await using (var reader = await cmd.ExecuteReaderAsync())
            while (await reader.ReadAsync()) selected.Add(reader.GetString(0));

        var expected = Examples.Where(e => oracle(e.Payload)).Select(e => e.Type).ToList();
        Assert.That(selected, Is.EquivalentTo(expected));
    }

    [Test]
    public void The_operator_cases_are_not_trivial()
    {
        // All cases but three (everything, nothing, and null, which no example holds) select some but not all of
        // the 17 types, so a filter that matched everything or nothing would fail them.
        var proper = Operators().Count(c =>
        {
            var n = Examples.Count(e => ((Func<JsonNode, bool>)c.Arguments[1]!)(e.Payload));
            return n > 0 && n < Examples.Count;
        });
        Assert.That(proper, Is.GreaterThanOrEqualTo(Operators().Count() - 3));
    }

    private static IEnumerable<TestCaseData> BadFilters()
    {
        var deep = """{"event_type": "x"}""";
        for (var i = 0; i < 5; i++) deep = $$"""{"$not": {{deep}}}""";
        var many = "{" + string.Join(", ", Enumerable.Range(0, 51).Select(i => $"\"data.f{i}\": 1")) + "}";
        var big = "{\"data.subject\": {\"$in\": [" + string.Join(", ", Enumerable.Range(0, 40).Select(_ => "\"" + new string('x', 100) + "\"")) + "]}}";
        (string Name, string Filter, string Where, string Says)[] cases =
        [
            ("a comparison with a string that is no timestamp", """{"$and": [{"event_type": "email.received"}, {"data.x": {"$gt": "soon"}}]}""",
                "filter.$and[1].data.x.$gt", "number or an RFC 3339 timestamp"),
            ("an unknown operator", """{"data.from": {"$like": "a%"}}""", "filter.data.from.$like", "Unknown operator"),
            ("an unknown combinator", """{"$xor": []}""", "filter.$xor", "Unknown combinator"),
            ("a path outside the payload", """{"user_id": "u1"}""", "filter.user_id", "starts with one of"),
            ("a path that is not dotted names", """{"data..from": "a"}""", "filter.data..from", "Not a path"),
            ("$in that is not an array", """{"event_type": {"$in": "email.received"}}""", "filter.event_type.$in", "non-empty array"),
            ("an object compared", """{"$or": [{"data.to": {"$eq": {"a": 1}}}]}""", "filter.$or[0].data.to.$eq", "objects and arrays are not compared"),
            ("$exists that is not a boolean", """{"data.to": {"$exists": 1}}""", "filter.data.to.$exists", "true or false"),
            ("an empty $and", """{"$and": []}""", "filter.$and", "non-empty array"),
            ("a filter that is not an object", """["event_type"]""", "filter", "object of conditions"),
            ("an empty filter", """{}""", "filter", "at least one condition"),
            ("nesting past 5", deep, "filter.$not.$not.$not.$not.$not", "at most 5 levels"),
            ("more than 50 conditions", many, "filter", "At most 50 conditions"),
            ("more than 4 KiB", big, "filter", "At most 4096 bytes"),
        ];
        foreach (var (name, filter, where, says) in cases)
        {
            yield return new TestCaseData(true, filter, where, says).SetName($"POST refuses a filter with {name}");
            yield return new TestCaseData(false, filter, where, says).SetName($"PATCH refuses a filter with {name}");
        }
    }

    [TestCaseSource(nameof(BadFilters))]
    public async Task A_bad_filter_answers_400_naming_its_part_and_changes_nothing(bool create, string filter, string where, string says)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        JsonNode? existing = create ? null : await client.CreateAsync("https://hooks.example.com/f", ["email.received"]);
        var body = $$"""{"url": "https://hooks.example.com/f", "event_types": ["email.received"], "filter": {{filter}}}""";

        var response = create
            ? await client.PostJsonAsync("/api/webhooks", body)
            : await client.PatchJsonAsync($"/api/webhooks/{existing!.Id()}", $$"""{"filter": {{filter}}}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var problem = await response.JsonAsync();
        Assert.That(problem.ErrorFields(), Does.Contain(where));
        Assert.That(problem["errors"]![where]![0]!.GetValue<string>(), Does.Contain(says));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().Where(s => s.UserId == user).ToListAsync());
        Assert.That(stored, create ? Is.Empty : Has.Count.EqualTo(1));
        if (!create) Assert.That(stored[0].Filter, Is.Null);
    }

    [Test]
    public async Task A_filter_is_stored_shown_changed_and_removed()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await (await client.PostJsonAsync("/api/webhooks",
            """{"url": "https://hooks.example.com/f", "event_types": ["email.received"], "filter": {"data.from": {"$in": ["a@example.com"]}}}""")).JsonAsync();
        var id = created.Id();
        Assert.That(created["filter"]!.ToJsonString(), Is.EqualTo("""{"data.from":{"$in":["a@example.com"]}}"""));

        var patched = await (await client.PatchJsonAsync($"/api/webhooks/{id}", """{"filter": {"data.to[]": "b@example.com"}}""")).JsonAsync();
        Assert.That(patched["filter"]!.ToJsonString(), Is.EqualTo("""{"data.to[]":"b@example.com"}"""));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == id));
        Assert.That(stored.FilterPath, Does.Contain("\"to\"[*]"));

        var removed = await (await client.PatchJsonAsync($"/api/webhooks/{id}", """{"filter": null}""")).JsonAsync();
        stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == id));
        Assert.Multiple(() =>
        {
            Assert.That(removed["filter"], Is.Null);
            Assert.That(stored.Filter, Is.Null);
            Assert.That(stored.FilterPath, Is.Null);
        });
    }

    [Test]
    public async Task The_event_catalog_serves_the_filter_language_and_the_built_in_templates()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var json = await (await client.GetAsync("/api/webhooks/event-types")).JsonAsync();

        var filters = json["filters"]!;
        Assert.Multiple(() =>
        {
            Assert.That(filters["operators"]!.AsArray().Select(o => o!.GetValue<string>()), Is.EquivalentTo(PayloadFilter.Operators));
            Assert.That(filters["max_depth"]!.GetValue<int>(), Is.EqualTo(5));
            Assert.That(filters["max_conditions"]!.GetValue<int>(), Is.EqualTo(50));
            Assert.That(filters["max_bytes"]!.GetValue<int>(), Is.EqualTo(4096));
            Assert.That(json["templates"]!.AsArray().Select(t => t!["name"]!.GetValue<string>()), Is.EquivalentTo(new[] { "slack", "discord", "teams", "text" }));
        });
        // Every example the catalog shows is a valid filter.
        foreach (var example in filters["examples"]!.AsArray())
            Assert.That(PayloadFilter.Compile(JsonDocument.Parse(example!["filter"]!.ToJsonString()).RootElement).Errors, Is.Empty,
                example["description"]!.GetValue<string>());
    }
}
