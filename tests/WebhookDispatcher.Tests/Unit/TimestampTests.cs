using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MassTransit.Serialization;
using Notely.Events;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// The timestamp rules, independent of the host's time zone by construction (nothing here reads
/// TimeZoneInfo.Local); <see cref="Delivery.TimeZoneTests"/> proves it end to end under another zone.
/// </summary>
public sealed class TimestampTests
{
    private static readonly JsonSerializerOptions Incoming = IncomingEventJson.Configure(new JsonSerializerOptions(SystemTextJsonMessageSerializer.Options));

    private static IEnumerable<TestCaseData> AllTypes() => EventCatalog.All.Select(t => new TestCaseData(t).SetArgDisplayNames(t.Name));

    /// <summary>Every DateTimeOffset property of a contract, OccurredAt included.</summary>
    internal static PropertyInfo[] TimestampProperties(Type contract) =>
        contract.GetProperties().Where(p => p.PropertyType == typeof(DateTimeOffset) || p.PropertyType == typeof(DateTimeOffset?)).ToArray();

    internal static string Snake(string name) => JsonNamingPolicy.SnakeCaseLower.ConvertName(name);

    internal static string Camel(string name) => JsonNamingPolicy.CamelCase.ConvertName(name);

    [Test]
    public void A_payload_timestamp_is_UTC_truncated_to_milliseconds_with_Z()
    {
        Assert.Multiple(() =>
        {
            Assert.That(UtcTimestamp.ToPayloadString(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.FromHours(2)).AddTicks(1_239_999)),
                Is.EqualTo("2026-11-30T10:00:00.123Z"));
            Assert.That(UtcTimestamp.ToPayloadString(new DateTimeOffset(2026, 12, 31, 23, 59, 59, 999, TimeSpan.Zero).AddTicks(9_999)),
                Is.EqualTo("2026-12-31T23:59:59.999Z"), "never rounded into the next second, day or year");
            Assert.That(UtcTimestamp.ToPayloadString(new DateTimeOffset(2026, 11, 30, 0, 30, 0, TimeSpan.FromHours(5.5))),
                Is.EqualTo("2026-11-29T19:00:00.000Z"), "a positive offset moves the date back");
        });
    }

    [TestCaseSource(nameof(AllTypes))]
    public void Every_timestamp_field_of_the_payload_is_UTC_in_the_one_format_whatever_the_publishers_offset(EventTypeInfo type)
    {
        var evt = EventSchemas.Example(type);
        var expected = new Dictionary<string, string>();
        var offset = TimeSpan.FromHours(-5);
        foreach (var property in TimestampProperties(type.ContractType))
        {
            var utc = ((DateTimeOffset)property.GetValue(evt)!).AddTicks(4_567_891); // 456.7891 ms
            property.SetValue(evt, utc.ToOffset(offset));
            expected[property.Name] = utc.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "Z";
            offset += TimeSpan.FromHours(3.5);
        }

        var payload = JsonNode.Parse(WebhookPayload.Build(evt))!;

        Assert.That(expected, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            foreach (var (name, value) in expected)
            {
                var actual = name == nameof(INotelyEvent.OccurredAt) ? payload["created_at"] : payload["data"]![Snake(name)];
                Assert.That(actual?.GetValue<string>(), Is.EqualTo(value), name);
                Assert.That(actual?.GetValue<string>(), Does.Match(UtcTimestamp.Pattern), name);
            }
        });
    }

    [Test]
    public void The_issue_case_a_zone_less_occurred_at_is_UTC_and_a_plus_two_hours_date_becomes_Z()
    {
        var message = EventSchemas.ExampleMessage(EventCatalog.For<EmailReceived>())!.AsObject();
        message["occurredAt"] = "2026-11-30T10:00:00";
        message["date"] = "2026-11-30T12:00:00+02:00";

        var evt = message.Deserialize<EmailReceived>(Incoming)!;
        var payload = JsonNode.Parse(WebhookPayload.Build(evt))!;

        Assert.Multiple(() =>
        {
            Assert.That(payload["created_at"]!.GetValue<string>(), Is.EqualTo("2026-11-30T10:00:00.000Z"));
            Assert.That(payload["data"]!["date"]!.GetValue<string>(), Is.EqualTo("2026-11-30T10:00:00.000Z"));
        });
    }

    [TestCaseSource(nameof(AllTypes))]
    public void Every_incoming_timestamp_field_reads_zone_less_as_UTC_and_honours_offsets(EventTypeInfo type)
    {
        var message = EventSchemas.ExampleMessage(type)!.AsObject();
        var expected = new Dictionary<string, string>();
        var i = 0;
        foreach (var property in TimestampProperties(type.ContractType))
        {
            var local = new DateTime(2026, 3, 29, 1, 30, 0).AddDays(i); // around a European DST change
            // Alternate: no offset (means UTC), Z, a positive and a negative offset, more than 7 fraction digits, date only.
            (message[Camel(property.Name)], expected[property.Name]) = (i % 6) switch
            {
                0 => (local.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff"), local.ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "Z"),
                1 => (local.ToString("yyyy-MM-dd'T'HH:mm:ss") + "Z", local.ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "Z"),
                2 => (local.ToString("yyyy-MM-dd'T'HH:mm:ss") + "+02:00", local.AddHours(-2).ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "Z"),
                3 => (local.ToString("yyyy-MM-dd'T'HH:mm:ss.123") + "-07:00", local.AddHours(7).ToString("yyyy-MM-dd'T'HH:mm:ss") + ".123Z"),
                4 => (local.ToString("yyyy-MM-dd'T'HH:mm") + ":00.123456789Z", local.ToString("yyyy-MM-dd'T'HH:mm") + ":00.123Z"),
                _ => (local.ToString("yyyy-MM-dd"), local.Date.ToString("yyyy-MM-dd'T'HH:mm:ss.fff") + "Z"),
            };
            i++;
        }

        var evt = (INotelyEvent)message.Deserialize(type.ContractType, Incoming)!;
        var payload = JsonNode.Parse(WebhookPayload.Build(evt))!;

        Assert.Multiple(() =>
        {
            foreach (var (name, value) in expected)
            {
                var actual = name == nameof(INotelyEvent.OccurredAt) ? payload["created_at"] : payload["data"]![Snake(name)];
                Assert.That(actual?.GetValue<string>(), Is.EqualTo(value), $"{name} sent as {message[Camel(name)]}");
            }
        });
    }

    [TestCase("\"30/11/2026 10:00\"", "EmailIndexed field $.occurredAt: \"30/11/2026 10:00\" is not an ISO 8601 timestamp; send e.g. \"2026-11-30T10:00:00Z\" or \"2026-11-30T12:00:00+02:00\".")]
    [TestCase("\"2026-11-30 10:00:00Z\"", "EmailIndexed field $.occurredAt: \"2026-11-30 10:00:00Z\" is not an ISO 8601 timestamp;")]
    [TestCase("\"2026-11-30t10:00:00z\"", "EmailIndexed field $.occurredAt: \"2026-11-30t10:00:00z\" separates date and time with a lower-case \"t\"")]
    [TestCase("\"2026-11-30T10:00:00z\"", "EmailIndexed field $.occurredAt: \"2026-11-30T10:00:00z\" ends with a lower-case \"z\" (RFC 3339 allows it); send ISO 8601's upper-case \"Z\"")]
    [TestCase("\"2026-11-30T10:00:00,5Z\"", "EmailIndexed field $.occurredAt: \"2026-11-30T10:00:00,5Z\" separates the seconds' fraction with a comma (ISO 8601 allows it); send a dot")]
    [TestCase("\"2026-11-30T24:00:00z\"", "\"2026-11-30T24:00:00z\" is ISO 8601 in form, but a date or time field is out of its range")]
    [TestCase("\"2026-11-30T25:00:00Z\"", "EmailIndexed field $.occurredAt: \"2026-11-30T25:00:00Z\" is ISO 8601 in form, but a date or time field is out of its range: " +
                                         "month 01–12, day within its month, hour 00–23, minute and second 00–59 (no 24:00, no leap second).")]
    [TestCase("\"2026-02-30\"", "\"2026-02-30\" is ISO 8601 in form, but a date or time field is out of its range")]
    [TestCase("\"2026-11-30T10:00:00+15:00\"", "EmailIndexed field $.occurredAt: \"2026-11-30T10:00:00+15:00\" is ISO 8601 in form, but its offset +15:00 is out of range: " +
                                              "offsets run from -14:00 to +14:00.")]
    [TestCase("\"2026-11-30T10:00:00+10:60\"", "its offset +10:60 is out of range")]
    [TestCase("\"9999-12-31T23:59:59-01:00\"", "EmailIndexed field $.occurredAt: \"9999-12-31T23:59:59-01:00\" is a valid ISO 8601 timestamp but out of range: " +
                                              "in UTC it is after 9999-12-31T23:59:59.9999999Z, the latest instant this service holds.")]
    [TestCase("\"0001-01-01T00:30:00+01:00\"", "EmailIndexed field $.occurredAt: \"0001-01-01T00:30:00+01:00\" is a valid ISO 8601 timestamp but out of range: " +
                                              "in UTC it is before 0001-01-01T00:00:00Z, the earliest instant this service holds.")]
    [TestCase("1796032800", "EmailIndexed field $.occurredAt: expected a timestamp string such as \"2026-11-30T10:00:00Z\", found the number 1796032800.")]
    [TestCase("null", "EmailIndexed field $.occurredAt: expected a timestamp string such as \"2026-11-30T10:00:00Z\", found null.")]
    public void An_incoming_timestamp_that_cannot_be_read_is_refused_with_a_reason_naming_the_field_and_what_is_wrong(string value, string reason)
    {
        var json = $$"""{"eventId":"{{Guid.NewGuid()}}","userId":"u","occurredAt":{{value}},"emailId":"e","indexedAt":"2026-11-30T10:00:00Z"}""";

        var ex = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<EmailIndexed>(json, Incoming));

        Assert.Multiple(() =>
        {
            Assert.That(ex!.Message, Does.StartWith("EmailIndexed field $.occurredAt: "), "names the field");
            Assert.That(ex.Message, Does.Contain(reason));
            // MassTransit's MT-Fault-Message is the innermost exception's message: it must be the reason itself.
            Assert.That(ex.GetBaseException(), Is.SameAs(ex));
        });
    }

    [Test]
    public void Contracts_carry_time_only_as_DateTimeOffset()
    {
        // A DateTime, DateOnly or a string named like a time would escape the one format.
        var offenders = EventCatalog.All.SelectMany(t => t.ContractType.GetProperties())
            .Where(p => (Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType) is var type
                        && (type == typeof(DateTime) || type == typeof(DateOnly) || type == typeof(TimeOnly)
                            || (type == typeof(string) && Regex.IsMatch(p.Name, "(At|Date|Time)$"))))
            .Select(p => $"{p.DeclaringType!.Name}.{p.Name}");

        Assert.That(offenders, Is.Empty);
    }
}
