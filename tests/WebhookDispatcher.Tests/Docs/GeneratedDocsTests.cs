using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Docs;

/// <summary>
/// The event sections of docs/publishing.md and docs/webhooks.md are generated from the contracts
/// (through <see cref="EventSchemas"/>), never written by hand: this test renders them and fails
/// when the committed text differs. Regenerate with
/// <c>UPDATE_GENERATED_DOCS=1 deploy/test.sh --filter FullyQualifiedName~GeneratedDocsTests</c>.
/// </summary>
public sealed class GeneratedDocsTests
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [Test]
    public void Publishing_md_shows_every_event_message_as_the_contracts_define_it() =>
        AssertGenerated("docs/publishing.md", "event messages", RenderMessages());

    [Test]
    public void Webhooks_md_shows_every_event_payload_as_the_contracts_define_it() =>
        AssertGenerated("docs/webhooks.md", "event payloads", RenderPayloads());

    private static void AssertGenerated(string file, string section, string generated)
    {
        var begin = $"<!-- BEGIN GENERATED: {section} (tests/WebhookDispatcher.Tests/Docs/GeneratedDocsTests.cs) -->\n";
        var end = $"<!-- END GENERATED: {section} -->";
        var path = Repo.Path(file);
        var text = File.ReadAllText(path).ReplaceLineEndings("\n");
        var from = text.IndexOf(begin, StringComparison.Ordinal);
        var to = text.IndexOf(end, StringComparison.Ordinal);
        Assert.That(from >= 0 && to > from, Is.True, $"{file} has the markers {begin.Trim()} … {end}");
        var committed = text[(from + begin.Length)..to];
        if (committed != generated && Environment.GetEnvironmentVariable("UPDATE_GENERATED_DOCS") == "1")
        {
            File.WriteAllText(path, text[..(from + begin.Length)] + generated + text[to..]);
            return;
        }
        Assert.That(committed, Is.EqualTo(generated),
            $"{file} is out of date with the contracts; run UPDATE_GENERATED_DOCS=1 deploy/test.sh --filter FullyQualifiedName~GeneratedDocsTests");
    }

    internal static string RenderMessages()
    {
        var md = new StringBuilder();
        foreach (var type in EventCatalog.All)
        {
            var schema = EventSchemas.MessageSchema(type);
            var contract = type.ContractType;
            md.Append($"\n### {contract.Name} (`{type.Name}`)\n\n{type.Description}\n\n");
            md.Append($"Exchange `{RawEvents.Exchange(type)}`, `messageType` `urn:message:{contract.Namespace}:{contract.Name}`.\n\n");
            md.Append("| field | type | required | meaning |\n|---|---|---|---|\n");
            var required = schema["required"]?.AsArray().Select(r => r!.GetValue<string>()).ToHashSet() ?? [];
            foreach (var (name, property) in schema["properties"]!.AsObject())
                md.Append($"| `{name}` | {TypeOf(property!)} | {(required.Contains(name) ? "yes" : "no")} | {property!["description"]?.GetValue<string>()} |\n");
            var envelope = new JsonObject
            {
                ["messageId"] = "7d3f1c52-8d0e-4a34-9a43-0c8b1d6f2e11",
                ["messageType"] = new JsonArray($"urn:message:{contract.Namespace}:{contract.Name}"),
                ["message"] = EventSchemas.ExampleMessage(type),
            };
            md.Append($"\n```json\n{envelope.ToJsonString(Indented)}\n```\n");
        }
        return md.ToString();
    }

    internal static string RenderPayloads()
    {
        var md = new StringBuilder();
        foreach (var type in EventCatalog.All)
        {
            var data = EventSchemas.PayloadSchema(type)["properties"]!["data"]!;
            md.Append($"\n### `{type.Name}`\n\n{type.Description} Schema: `GET /api/webhooks/event-types/{type.Name}`. " +
                      $"Ordering key under `ordering: per_key`: `{type.OrderingKey}`" +
                      (type.OrderingKey == EventTypeInfo.UserKey
                          ? " (not in the payload: the user the subscription belongs to, so one key per subscription for these events).\n\n"
                          : ".\n\n"));
            md.Append("| `data` field | type | meaning |\n|---|---|---|\n");
            foreach (var (name, property) in data["properties"]!.AsObject())
                md.Append($"| `{name}` | {TypeOf(property!)} | {property!["description"]?.GetValue<string>()} |\n");
            md.Append($"\n```json\n{EventSchemas.ExamplePayload(type).ToJsonString(Indented)}\n```\n");
        }
        return md.ToString();
    }

    /// <summary>"string (date-time)", "string or null", "array of string", …</summary>
    private static string TypeOf(JsonNode schema)
    {
        var types = schema["type"] switch
        {
            JsonArray array => array.Select(t => t!.GetValue<string>()).ToList(),
            JsonValue value => [value.GetValue<string>()],
            _ => ["any"],
        };
        var main = types.First(t => t != "null");
        var text = main switch
        {
            "array" => "array of " + TypeOf(schema["items"]!),
            "string" when schema["format"] is { } format => $"string ({format.GetValue<string>()})",
            _ => main,
        };
        return types.Contains("null") ? text + " or null" : text;
    }
}
