using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using System.Xml.Linq;
using Notely.Events;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// JSON Schemas (draft 2020-12) and examples generated from the contracts in
/// <c>contracts/Notely.Events</c>, so nothing about an event's shape is written twice: the webhook
/// payload subscribers receive (served by <c>GET /api/webhooks/event-types</c>) and the message
/// publishers send on RabbitMQ (rendered into docs/publishing.md). Descriptions come from the
/// contracts' XML documentation when its file sits beside the contracts assembly.
/// </summary>
public static class EventSchemas
{
    /// <summary>The JSON Schema dialect of every schema here.</summary>
    public const string Dialect = "https://json-schema.org/draft/2020-12/schema";

    /// <summary>The instant the examples start at: 2026-11-30T10:00:00Z; each timestamp field adds an hour.</summary>
    public static readonly DateTimeOffset ExampleTime = new(2026, 11, 30, 10, 0, 0, TimeSpan.Zero);

    // Strict numbers: subscribers receive numbers as JSON numbers.
    private static readonly JsonSerializerOptions PayloadSchemaOptions = new(WebhookPayload.JsonOptions)
    {
        RespectNullableAnnotations = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict,
    };

    /// <summary>
    /// How publishers write messages: camelCase (MassTransit's naming; it matches case-insensitively),
    /// timestamps as strings, numbers as JSON numbers (the fan-out consumer parks a number sent as a
    /// string, <see cref="IncomingEventJson"/>). Used for the message schemas and examples.
    /// </summary>
    public static readonly JsonSerializerOptions MessageJsonOptions = CreateMessageOptions();

    private static readonly Lazy<XmlDocs> Docs = new(() => XmlDocs.Load(typeof(INotelyEvent).Assembly));

    /// <summary>
    /// The schema of the webhook payload of <paramref name="eventType"/>:
    /// <c>{"id", "event_type", "created_at", "data"}</c>, every field present (nullable ones as
    /// <c>null</c>), timestamps matching <see cref="UtcTimestamp.Pattern"/>. <c>data</c> allows
    /// properties it does not list: contracts grow by adding fields.
    /// </summary>
    public static JsonObject PayloadSchema(EventTypeInfo eventType)
    {
        var data = ContractSchema(eventType.ContractType, PayloadSchemaOptions, allPresent: true);
        foreach (var field in WebhookPayload.ContractEnvelopeFields)
            Remove(data, field);
        return new JsonObject
        {
            ["$schema"] = Dialect,
            ["title"] = eventType.Name,
            ["description"] = eventType.Description,
            ["type"] = "object",
            ["properties"] = new JsonObject
            {
                ["id"] = new JsonObject
                {
                    ["type"] = "string", ["format"] = "uuid",
                    ["description"] = "The event id: the same on every attempt and for every subscription; equals the webhook-id header.",
                },
                ["event_type"] = new JsonObject { ["type"] = "string", ["const"] = eventType.Name },
                ["created_at"] = TimestampSchema("When the event happened (the publisher's occurredAt), in UTC; the same on every attempt.", nullable: false),
                ["data"] = data,
            },
            ["required"] = new JsonArray([.. WebhookPayload.EnvelopeFields.Select(f => JsonValue.Create(f))]),
            ["additionalProperties"] = false,
        };
    }

    /// <summary>
    /// The schema of the message a publisher sends for <paramref name="eventType"/> (the
    /// <c>message</c> of the MassTransit envelope): camelCase, the contract's <c>required</c>
    /// properties required, timestamps as ISO 8601 strings (an offset is honoured, none means UTC).
    /// </summary>
    public static JsonObject MessageSchema(EventTypeInfo eventType)
    {
        var schema = ContractSchema(eventType.ContractType, MessageJsonOptions, allPresent: false);
        var result = new JsonObject { ["$schema"] = Dialect, ["title"] = eventType.ContractType.Name, ["description"] = eventType.Description };
        foreach (var (key, value) in schema.ToList())
        {
            schema.Remove(key);
            result[key] = value;
        }
        return result;
    }

    /// <summary>
    /// An example event of <paramref name="eventType"/>, generated from the contract's properties
    /// (every field filled, timestamps from <see cref="ExampleTime"/>), with a fixed id per type.
    /// </summary>
    /// <param name="eventType">The catalog entry.</param>
    /// <param name="userId">The owner; <c>user_123</c> when not given.</param>
    /// <param name="eventId">The event id; derived from the type name when not given.</param>
    public static INotelyEvent Example(EventTypeInfo eventType, string? userId = null, Guid? eventId = null)
    {
        var evt = Activator.CreateInstance(eventType.ContractType)!;
        var hour = 0;
        foreach (var property in eventType.ContractType.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            object value = property.Name switch
            {
                nameof(INotelyEvent.EventId) => eventId ?? StableGuid(eventType.Name),
                nameof(INotelyEvent.UserId) => userId ?? "user_123",
                nameof(INotelyEvent.OccurredAt) => ExampleTime,
                _ => ExampleValue(property, ref hour),
            };
            property.SetValue(evt, value);
        }
        return (INotelyEvent)evt;
    }

    /// <summary>The webhook payload of <see cref="Example"/>, exactly as it would be delivered.</summary>
    public static JsonNode ExamplePayload(EventTypeInfo eventType) => JsonNode.Parse(WebhookPayload.Build(Example(eventType)))!;

    /// <summary>The message of <see cref="Example"/> as a publisher would send it (<see cref="MessageJsonOptions"/>).</summary>
    public static JsonNode ExampleMessage(EventTypeInfo eventType, string? userId = null, Guid? eventId = null) =>
        JsonSerializer.SerializeToNode(Example(eventType, userId, eventId), eventType.ContractType, MessageJsonOptions)!;

    /// <summary>The description of a contract property from the contracts' XML docs, if available.</summary>
    public static string? Describe(Type contract, string propertyName) => Docs.Value.Property(contract, propertyName);

    private static JsonObject ContractSchema(Type contract, JsonSerializerOptions options, bool allPresent)
    {
        var exporter = new JsonSchemaExporterOptions
        {
            TreatNullObliviousAsNonNullable = true,
            TransformSchemaNode = (context, node) =>
            {
                // Only the node of a property itself, not of its items (an array's element type).
                var property = context.PropertyInfo is { } p && p.PropertyType == context.TypeInfo.Type ? p.AttributeProvider as PropertyInfo : null;
                var type = context.TypeInfo.Type;
                var description = property?.DeclaringType is { } declaring ? Docs.Value.Property(declaring, property.Name) : null;
                if (type == typeof(DateTimeOffset) || type == typeof(DateTimeOffset?))
                    return TimestampSchema(description, type == typeof(DateTimeOffset?), payload: ReferenceEquals(options, PayloadSchemaOptions));
                if (description is not null && node is JsonObject obj && property is not null)
                    obj.Insert(0, "description", description);
                return node;
            },
        };
        var schema = options.GetJsonSchemaAsNode(contract, exporter).AsObject();
        if (allPresent && schema["properties"] is JsonObject properties)
            schema["required"] = new JsonArray([.. properties.Select(p => JsonValue.Create(p.Key))]);
        return schema;
    }

    private static JsonObject TimestampSchema(string? description, bool nullable, bool payload = true)
    {
        var schema = new JsonObject();
        if (description is not null) schema["description"] = description;
        schema["type"] = nullable ? new JsonArray("string", "null") : "string";
        schema["format"] = "date-time";
        if (payload) schema["pattern"] = UtcTimestamp.Pattern;
        return schema;
    }

    private static void Remove(JsonObject schema, string property)
    {
        (schema["properties"] as JsonObject)?.Remove(property);
        if (schema["required"] is JsonArray required && required.FirstOrDefault(r => r?.GetValue<string>() == property) is { } entry)
            required.Remove(entry);
    }

    private static object ExampleValue(PropertyInfo property, ref int hour)
    {
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        var name = property.Name;
        if (type == typeof(DateTimeOffset)) return ExampleTime.AddHours(++hour);
        if (type == typeof(Guid)) return StableGuid(property.DeclaringType!.Name + "." + name);
        if (type == typeof(long)) return name.EndsWith("Bytes", StringComparison.Ordinal) ? 1_048_576L : 42L;
        if (type == typeof(int)) return 42;
        if (type == typeof(double)) return 12.5;
        if (type == typeof(bool)) return true;
        if (type == typeof(IReadOnlyList<string>))
            return name switch
            {
                "To" or "Attendees" => new[] { "bob@example.com", "carol@example.com" },
                "ChangedFields" => new[] { "title", "due_date" },
                "ChangedSettings" => new[] { "timezone", "language" },
                _ => new[] { "example" },
            };
        if (type == typeof(string))
            return name switch
            {
                "From" or "Email" => "alice@example.com",
                "Subject" => "Quarterly report",
                "Title" => "Send the quarterly report",
                "BodyPreview" => "Hi Bob, the draft is attached.",
                "Description" => "Q3 numbers for the board",
                "Location" => "Room 4.12",
                "DisplayName" => "Alice Example",
                "Source" => "gmail",
                "Provider" => "google",
                "Format" => "zip",
                "Error" => "The mailbox refused the connection (authentication expired).",
                _ when name.EndsWith("Url", StringComparison.Ordinal) => "https://files.notely.example/exports/export_1001.zip",
                _ when name.EndsWith("Id", StringComparison.Ordinal) => JsonNamingPolicy.SnakeCaseLower.ConvertName(name[..^2]) + "_1001",
                _ => "example " + JsonNamingPolicy.SnakeCaseLower.ConvertName(name).Replace('_', ' '),
            };
        throw new NotSupportedException($"No example value for {property.DeclaringType!.Name}.{name} of type {property.PropertyType}: add one to {nameof(EventSchemas)}.");
    }

    private static Guid StableGuid(string seed)
    {
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes(seed))[..16];
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40); // version 4 layout (Guid's byte order), so validators accept it
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // RFC 4122 variant
        return new Guid(bytes);
    }

    private static JsonSerializerOptions CreateMessageOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            RespectNullableAnnotations = true,
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict,
        };
        options.Converters.Add(new PayloadTimestampConverter());
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    /// <summary>Summaries from a compiler-generated XML documentation file.</summary>
    private sealed class XmlDocs(Dictionary<string, string> summaries)
    {
        public static XmlDocs Load(Assembly assembly)
        {
            var path = Path.ChangeExtension(assembly.Location, ".xml");
            if (!File.Exists(path)) return new XmlDocs([]);
            var members = XDocument.Load(path).Descendants("member");
            return new XmlDocs(members
                .Where(m => m.Element("summary") is not null)
                .ToDictionary(m => (string)m.Attribute("name")!, m => Flatten(m.Element("summary")!)));
        }

        /// <summary>A property's summary; <c>&lt;inheritdoc/&gt;</c> resolves to <see cref="INotelyEvent"/>'s.</summary>
        public string? Property(Type declaring, string name) =>
            summaries.GetValueOrDefault($"P:{declaring.FullName}.{name}")
            ?? summaries.GetValueOrDefault($"P:{typeof(INotelyEvent).FullName}.{name}");

        private static string Flatten(XElement summary) =>
            string.Join(" ", string.Concat(summary.Nodes().Select(n => n switch { XElement e => e.Value, XText t => t.Value, _ => "" }))
                .Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries));
    }
}
