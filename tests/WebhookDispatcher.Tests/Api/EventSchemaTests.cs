using System.Net;
using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

[Parallelizable(ParallelScope.All)]
public sealed class EventSchemaTests
{
    private static async Task<JsonArray> EventTypesAsync()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var response = await client.GetAsync("/api/webhooks/event-types");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return (await response.JsonAsync())["event_types"]!.AsArray();
    }

    [Test]
    public async Task Every_event_type_is_served_with_a_payload_schema_and_an_example_that_validates_against_it()
    {
        var types = await EventTypesAsync();

        Assert.That(types.Select(t => t!["name"]!.GetValue<string>()), Is.EqualTo(EventCatalog.All.Select(t => t.Name)));
        Assert.Multiple(() =>
        {
            foreach (var type in types)
            {
                var name = type!["name"]!.GetValue<string>();
                Assert.That(type["schema"]!["$schema"]!.GetValue<string>(), Is.EqualTo("https://json-schema.org/draft/2020-12/schema"), name);
                Assert.That(type["schema"]!["properties"]!["event_type"]!["const"]!.GetValue<string>(), Is.EqualTo(name));
                Assert.That(type["example"]!["event_type"]!.GetValue<string>(), Is.EqualTo(name));
                Assert.That(SchemaValidation.Errors(type["schema"]!, type["example"]!.ToJsonString()), Is.Empty, name);
            }
        });
    }

    [Test]
    public async Task The_schema_refuses_a_payload_whose_timestamps_or_fields_are_not_as_documented()
    {
        var schema = (await EventTypesAsync()).Single(t => t!["name"]!.GetValue<string>() == "task.completed")!["schema"]!;
        JsonNode Example() => EventSchemas.ExamplePayload(EventCatalog.For<TaskCompleted>());

        var offset = Example();
        offset["data"]!["completed_at"] = "2026-11-30T11:00:00+00:00";
        var sevenDigits = Example();
        sevenDigits["created_at"] = "2026-11-30T10:00:00.0000000Z";
        var missing = Example();
        missing["data"]!.AsObject().Remove("title");
        var wrongType = Example();
        wrongType["event_type"] = "task.created";

        Assert.Multiple(() =>
        {
            Assert.That(SchemaValidation.Errors(schema, offset.ToJsonString()), Is.Not.Empty, "+00:00 instead of Z");
            Assert.That(SchemaValidation.Errors(schema, sevenDigits.ToJsonString()), Is.Not.Empty, "7 fraction digits");
            Assert.That(SchemaValidation.Errors(schema, missing.ToJsonString()), Is.Not.Empty, "a missing field");
            Assert.That(SchemaValidation.Errors(schema, wrongType.ToJsonString()), Is.Not.Empty, "another event type");
        });
    }

    [Test]
    public async Task One_event_type_is_served_by_name_and_an_unknown_name_answers_404()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var known = await client.GetAsync("/api/webhooks/event-types/email.received");
        var unknown = await client.GetAsync("/api/webhooks/event-types/email.archived");

        Assert.That(known.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await known.JsonAsync())["schema"]!["title"]!.GetValue<string>(), Is.EqualTo("email.received"));
        Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(unknown.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
    }

    [Test]
    public async Task Every_delivered_payload_of_all_17_types_validates_against_its_published_schema_and_matches_the_example()
    {
        var schemas = (await EventTypesAsync()).ToDictionary(t => t!["name"]!.GetValue<string>(), t => t!);
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, [.. EventCatalog.All.Select(t => t.Name)]);

        foreach (var type in EventCatalog.All)
            await (Task)typeof(Dispatcher).GetMethod(nameof(Dispatcher.PublishAsync))!.MakeGenericMethod(type.ContractType)
                .Invoke(null, [EventSchemas.Example(type, user, Guid.NewGuid())])!;

        Assert.That(await receiver.WaitForAsync(17, TimeSpan.FromSeconds(60)), Is.True, $"17 deliveries, got {receiver.Requests.Count}");
        Assert.Multiple(() =>
        {
            foreach (var request in receiver.Requests)
            {
                var body = System.Text.Encoding.UTF8.GetString(request.Body);
                var payload = JsonNode.Parse(body)!;
                var type = schemas[payload["event_type"]!.GetValue<string>()];
                Assert.That(SchemaValidation.Errors(type["schema"]!, body), Is.Empty, body);
                var expected = type["example"]!.DeepClone();
                expected["id"] = payload["id"]!.DeepClone();
                Assert.That(JsonNode.DeepEquals(payload, expected), Is.True, $"delivered {body}\nexample  {expected.ToJsonString()}");
            }
        });
    }
}
