using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using System.Text.Json.Nodes;
using MassTransit.Serialization;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// The reasons a bad event is parked with (docs/publishing.md, "What happens to a bad message"):
/// each names the field by its path and says what is wrong, and is the message of the innermost
/// exception (MassTransit's <c>MT-Fault-Message</c>); the size reasons name the size and the cap.
/// </summary>
public sealed class ParkedReasonTests
{
    private static readonly JsonSerializerOptions Incoming = IncomingEventJson.Configure(new JsonSerializerOptions(SystemTextJsonMessageSerializer.Options));

    private static IEnumerable<TestCaseData> BadFields()
    {
        yield return Case("an object inside to", m => m["to"] = new JsonArray("a@example.com", new JsonObject { ["email"] = "b@example.com" }),
            "EmailReceived field $.to[1]: expected a string, found an object.");
        yield return Case("a number inside to", m => m["to"] = new JsonArray("a@example.com", 5),
            "EmailReceived field $.to[1]: expected a string, found the number 5.");
        yield return Case("null inside to", m => m["to"] = new JsonArray("a@example.com", "b@example.com", null),
            "EmailReceived field $.to[2]: expected a string, found null (the items are not nullable).");
        yield return Case("to as a string", m => m["to"] = "a@example.com",
            "EmailReceived field $.to: expected an array of strings, found the string \"a@example.com\".");
        yield return Case("to as null", m => m["to"] = null,
            "EmailReceived field $.to: expected an array of strings, found null (the field is not nullable).");
        yield return Case("subject as an object", m => m["subject"] = new JsonObject(),
            "EmailReceived field $.subject: expected a string, found an object.");
        yield return Case("an event id that is no UUID", m => m["eventId"] = "evt_1",
            "EmailReceived field $.eventId: expected a UUID string such as \"5f74c51c-86c0-4dc7-a368-47b42c116b63\", found the string \"evt_1\".");
        yield return Case("an event id of null", m => m["eventId"] = null,
            "EmailReceived field $.eventId: expected a UUID string such as \"5f74c51c-86c0-4dc7-a368-47b42c116b63\", found null.");
        yield return Case("a field named in another case", m => { m.Remove("subject"); m["Subject"] = true; },
            "EmailReceived field $.Subject: expected a string, found true.");
        yield return Case("one required field missing", m => m.Remove("date"),
            "EmailReceived: required field $.date is missing.");
        yield return Case("two required fields missing", m => { m.Remove("to"); m.Remove("bodyPreview"); },
            "EmailReceived: required fields $.to, $.bodyPreview are missing.");
        yield return Case("a long value of the wrong type", m => m["sizeBytes"] = 1.5,
            "ExportCompleted field $.sizeBytes: expected a whole number from -9223372036854775808 to 9223372036854775807, found the number 1.5.",
            EventCatalog.For<ExportCompleted>());
        yield return Case("a long string value truncated in the reason", m => m["eventId"] = new string('x', 100),
            $"EmailReceived field $.eventId: expected a UUID string such as \"5f74c51c-86c0-4dc7-a368-47b42c116b63\", found the string \"{new string('x', 64)}…\".");
    }

    [TestCaseSource(nameof(BadFields))]
    public void A_bad_field_is_refused_with_a_reason_naming_its_path_and_what_is_wrong(EventTypeInfo type, Action<JsonObject> change, string reason)
    {
        var message = EventSchemas.ExampleMessage(type)!.AsObject();
        change(message);
        // As MassTransit reads it: the envelope's message element, deserialized to the contract.
        var element = JsonSerializer.SerializeToElement(message);

        var ex = Assert.Throws<JsonException>(() => element.Deserialize(type.ContractType, Incoming));

        Assert.Multiple(() =>
        {
            Assert.That(ex!.Message, Is.EqualTo(reason));
            Assert.That(ex.GetBaseException(), Is.SameAs(ex), "MT-Fault-Message carries the innermost exception's message");
        });
    }

    [Test]
    public void Every_number_field_of_a_message_schema_is_a_JSON_number_only_as_the_consumer_reads_it()
    {
        var numbers = 0;
        foreach (var type in EventCatalog.All)
        {
            var properties = EventSchemas.MessageSchema(type)["properties"]!.AsObject();
            foreach (var (name, property) in properties)
            {
                var types = property!["type"] switch
                {
                    JsonArray array => array.Select(t => t!.GetValue<string>()).ToList(),
                    JsonValue value => [value.GetValue<string>()],
                    _ => [],
                };
                if (!types.Contains("integer") && !types.Contains("number")) continue;
                numbers++;
                Assert.That(types, Does.Not.Contain("string"), $"{type.Name}.{name}: the schema publishers read allows a string");
                var message = EventSchemas.ExampleMessage(type)!.AsObject();
                message[name] = message[name]!.ToJsonString();
                var ex = Assert.Throws<JsonException>(() => JsonSerializer.SerializeToElement(message).Deserialize(type.ContractType, Incoming),
                    $"{type.Name}.{name} sent as a string");
                Assert.That(ex!.Message, Does.Contain($"$.{name}: expected"));
            }
        }
        Assert.That(numbers, Is.GreaterThanOrEqualTo(4), "itemsIndexed, durationSeconds, sizeBytes, itemsSynced at least");
    }

    [Test]
    public void A_message_that_is_not_an_object_is_refused_naming_the_contract()
    {
        var ex = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<EmailReceived>("\"hello\"", Incoming));

        Assert.That(ex!.Message, Is.EqualTo("EmailReceived message: expected an object, found the string \"hello\"."));
    }

    [Test]
    public void A_good_event_still_reads_and_optional_fields_may_be_null()
    {
        var message = EventSchemas.ExampleMessage(EventCatalog.For<TaskCreated>())!.AsObject();
        message["dueDate"] = null;
        message["description"] = null;

        var evt = JsonSerializer.SerializeToElement(message).Deserialize<TaskCreated>(Incoming)!;

        Assert.Multiple(() =>
        {
            Assert.That(evt.DueDate, Is.Null);
            Assert.That(evt.Description, Is.Null);
            Assert.That(evt.EventId, Is.EqualTo(message["eventId"]!.GetValue<Guid>()));
        });
    }

    [Test]
    public void The_size_reasons_name_the_size_the_cap_and_the_setting()
    {
        Assert.Multiple(() =>
        {
            Assert.That(EventSizeLimit.PayloadReason(1_048_600, 262_144), Is.EqualTo(
                "The event's payload is 1,048,600 bytes of JSON; the cap is 262,144 bytes (Delivery:MaxEventBytes). " +
                "Nothing was delivered for it; send large content as a link."));
            Assert.That(EventSizeLimit.ReceivedReason(20_971_600, 262_144), Is.EqualTo(
                "The event's message is 20,971,600 bytes as received; the cap is 262,144 bytes of payload (Delivery:MaxEventBytes), " +
                "and a message over 1,114,112 bytes (4 × the cap + 64 KiB for the envelope) is parked without being read. " +
                "Nothing was delivered for it; send large content as a link."));
            Assert.That(new DeliveryOptions().MaxReceivedEventBytes, Is.EqualTo(1_114_112));
        });
    }

    [Test]
    public void The_cap_counts_UTF8_bytes_of_the_payload_not_characters()
    {
        const int cap = 1024;
        var exact = new string('é', 512);
        var over = new string('é', 511) + "abc"; // 514 characters, 1,025 bytes

        Assert.Multiple(() =>
        {
            Assert.DoesNotThrow(() => EventSizeLimit.EnsureWithinCap(exact, cap));
            var ex = Assert.Throws<EventTooLargeException>(() => EventSizeLimit.EnsureWithinCap(over, cap));
            Assert.That(ex!.Message, Does.StartWith("The event's payload is 1,025 bytes of JSON; the cap is 1,024 bytes"));
        });
    }

    [TestCase(1023, false)]
    [TestCase(1024, true)]
    [TestCase(262_144, true)]
    [TestCase(4 * 1024 * 1024, true)]
    [TestCase(4 * 1024 * 1024 + 1, false)]
    public void The_cap_setting_is_validated(int maxEventBytes, bool valid)
    {
        var options = new DeliveryOptions { MaxEventBytes = maxEventBytes };
        var results = new List<ValidationResult>();

        var ok = Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);

        Assert.That(ok, Is.EqualTo(valid), string.Join("; ", results.Select(r => r.ErrorMessage)));
        if (!valid) Assert.That(results.SelectMany(r => r.MemberNames), Does.Contain(nameof(DeliveryOptions.MaxEventBytes)));
    }

    private static TestCaseData Case(string name, Action<JsonObject> change, string reason, EventTypeInfo? type = null) =>
        new TestCaseData(type ?? EventCatalog.For<EmailReceived>(), change, reason).SetArgDisplayNames(name);
}
