using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// The one timestamp format of webhook payloads, and the rule for reading timestamps in incoming
/// events. Written: RFC 3339 in UTC with exactly three fraction digits and a <c>Z</c>, e.g.
/// <c>2026-11-30T10:00:00.000Z</c> (truncated to the millisecond, the precision JavaScript's
/// <c>Date</c> keeps). Read: ISO 8601 extended format; an explicit offset (<c>Z</c>, <c>+02:00</c>)
/// is honoured, and a timestamp without one is read as UTC — never in the host's time zone, which
/// System.Text.Json would otherwise use. See docs/decisions/0002-one-timestamp-format.md.
/// </summary>
public static partial class UtcTimestamp
{
    /// <summary>The .NET format string of payload timestamps (invariant culture).</summary>
    public const string Format = "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fff'Z'";

    /// <summary>The regular expression every payload timestamp matches (also the JSON Schema <c>pattern</c>).</summary>
    public const string Pattern = @"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$";

    /// <summary><paramref name="value"/> as a payload timestamp: UTC, milliseconds, <c>Z</c>.</summary>
    public static string ToPayloadString(DateTimeOffset value) =>
        new DateTimeOffset(value.UtcTicks - value.UtcTicks % TimeSpan.TicksPerMillisecond, TimeSpan.Zero)
            .ToString(Format, CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses an incoming timestamp: ISO 8601 extended format as System.Text.Json accepts it
    /// (<c>2026-11-30</c>, <c>2026-11-30T10:00:00</c>, up to 7 fraction digits, optional
    /// <c>Z</c> or <c>±hh:mm</c>). With no offset the value is UTC, whatever the host's zone.
    /// </summary>
    /// <returns>False when <paramref name="text"/> is not such a timestamp.</returns>
    public static bool TryParse(string text, out DateTimeOffset value)
    {
        value = default;
        // Let System.Text.Json decide what ISO 8601 is (its reader is strict and allocation-free),
        // then take the zone-less reading apart from the zoned one.
        var json = JsonSerializer.Serialize(text);
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(json));
        reader.Read();
        return TryRead(ref reader, text, out value);
    }

    internal static bool TryRead(ref Utf8JsonReader reader, string text, out DateTimeOffset value)
    {
        value = default;
        if (HasOffset(text))
            return reader.TryGetDateTimeOffset(out value);
        if (!reader.TryGetDateTime(out var unspecified)) return false;
        value = new DateTimeOffset(DateTime.SpecifyKind(unspecified, DateTimeKind.Unspecified), TimeSpan.Zero);
        return true;
    }

    /// <summary>
    /// What is wrong with <paramref name="text"/>, a timestamp <see cref="TryParse"/> refuses, in
    /// words a publisher can act on: not ISO 8601 (extended format) at all; a date or time field
    /// out of its range (February 30, 24:00, a leap second); an offset past ±14:00; or a valid
    /// ISO 8601 timestamp outside what .NET's <see cref="DateTimeOffset"/> holds once converted to
    /// UTC (<c>9999-12-31T23:59:59-01:00</c> is 10000-01-01 in UTC).
    /// </summary>
    /// <returns>A sentence naming the value (cut at 64 characters), without the field it came from.</returns>
    public static string Explain(string text)
    {
        var quoted = $"\"{Truncate(text)}\"";
        var shape = IsoShape().Match(text);
        if (!shape.Success && text.Length > 10 && text[10] == 't' && IsoShape().IsMatch(string.Concat(text.AsSpan(0, 10), "T", text.AsSpan(11))))
            return $"{quoted} separates date and time with a lower-case \"t\" (RFC 3339 allows it); send ISO 8601's upper-case \"T\", e.g. \"2026-11-30T10:00:00Z\".";
        if (!shape.Success && text.Contains(',') && IsoShape().IsMatch(text.Replace(',', '.')))
            return $"{quoted} separates the seconds' fraction with a comma (ISO 8601 allows it); send a dot, e.g. \"2026-11-30T10:00:00.5Z\".";
        if (!shape.Success)
            return $"{quoted} is not an ISO 8601 timestamp; send e.g. \"2026-11-30T10:00:00Z\" or \"2026-11-30T12:00:00+02:00\".";
        if (!TryReadZoneLess(shape.Groups["local"].Value, out var local))
            return $"{quoted} is ISO 8601 in form, but a date or time field is out of its range: month 01–12, day within its month, " +
                   "hour 00–23, minute and second 00–59 (no 24:00, no leap second).";
        var offset = shape.Groups["offset"].Value;
        if (offset is "z")
            return $"{quoted} ends with a lower-case \"z\" (RFC 3339 allows it); send ISO 8601's upper-case \"Z\", e.g. \"2026-11-30T10:00:00Z\".";
        if (offset is "" or "Z")
            return $"{quoted} is not an ISO 8601 timestamp; send e.g. \"2026-11-30T10:00:00Z\" or \"2026-11-30T12:00:00+02:00\".";
        var hours = int.Parse(offset.AsSpan(1, 2), CultureInfo.InvariantCulture);
        var minutes = offset.Length > 3 ? int.Parse(offset.AsSpan(4, 2), CultureInfo.InvariantCulture) : 0;
        if (minutes > 59 || hours * 60 + minutes > 14 * 60)
            return $"{quoted} is ISO 8601 in form, but its offset {offset} is out of range: offsets run from -14:00 to +14:00.";
        var utcTicks = local.Ticks - (offset[0] == '-' ? -1 : 1) * (hours * TimeSpan.TicksPerHour + minutes * TimeSpan.TicksPerMinute);
        return utcTicks > DateTimeOffset.MaxValue.UtcTicks
            ? $"{quoted} is a valid ISO 8601 timestamp but out of range: in UTC it is after 9999-12-31T23:59:59.9999999Z, the latest instant this service holds."
            : $"{quoted} is a valid ISO 8601 timestamp but out of range: in UTC it is before 0001-01-01T00:00:00Z, the earliest instant this service holds.";
    }

    /// <summary>The forms System.Text.Json reads (ISO 8601-1:2019 extended format), split into the local part and the offset.</summary>
    [GeneratedRegex(@"^(?<local>\d{4}-\d{2}-\d{2})$|^(?<local>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?<offset>[Zz]|[+-]\d{2}(?::\d{2})?)?$")]
    private static partial Regex IsoShape();

    private static bool TryReadZoneLess(string local, out DateTime value)
    {
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(local)));
        reader.Read();
        return reader.TryGetDateTime(out value);
    }

    internal static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "…";

    /// <summary>Whether the time part (after <c>T</c>) ends in <c>Z</c> or a <c>±hh:mm</c> offset.</summary>
    private static bool HasOffset(string text)
    {
        var t = text.IndexOf('T');
        return t >= 0 && text.AsSpan(t + 1).IndexOfAny("Zz+-") >= 0;
    }
}

/// <summary>
/// Reads <see cref="DateTimeOffset"/> values of incoming events by the rule of
/// <see cref="UtcTimestamp.TryParse"/> (no offset means UTC) and writes them in ISO 8601 round-trip
/// form with their offset, so a .NET publisher loses nothing.
/// </summary>
public sealed class IncomingTimestampConverter : JsonConverter<DateTimeOffset>
{
    /// <inheritdoc />
    /// <exception cref="EventFieldException">The value is not a string, or not a timestamp this
    /// service reads (the reason says which, by <see cref="UtcTimestamp.Explain"/>).</exception>
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
            throw new EventFieldException($"expected a timestamp string such as \"2026-11-30T10:00:00Z\", found {IncomingEventReasons.Found(ref reader)}.");
        var text = reader.GetString()!;
        return UtcTimestamp.TryRead(ref reader, text, out var value)
            ? value
            : throw new EventFieldException(UtcTimestamp.Explain(text));
    }

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString("O", CultureInfo.InvariantCulture));
}

/// <summary>Writes <see cref="DateTimeOffset"/> values of payloads in the one payload format (<see cref="UtcTimestamp.Format"/>).</summary>
public sealed class PayloadTimestampConverter : JsonConverter<DateTimeOffset>
{
    /// <inheritdoc />
    /// <exception cref="JsonException">The value is not a timestamp string.</exception>
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.String && UtcTimestamp.TryRead(ref reader, reader.GetString()!, out var value)
            ? value
            : throw new JsonException("Not a timestamp.");

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options) =>
        writer.WriteStringValue(UtcTimestamp.ToPayloadString(value));
}
