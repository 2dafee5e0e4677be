using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// A field of an incoming event that breaks a rule of <see cref="IncomingEventJson"/>, thrown
/// while the event is read. <see cref="IncomingEventReasons"/> turns it into the parked reason,
/// with the field's path in front.
/// </summary>
/// <param name="problem">What is wrong, without the field (e.g. <c>expected a string, found null</c>).</param>
/// <param name="subPath">Path below the field being set, such as <c>[1]</c> for an array item; empty for the field itself.</param>
public sealed class EventFieldException(string problem, string subPath = "") : JsonException(problem)
{
    /// <summary>What is wrong, without the field.</summary>
    public string Problem { get; } = problem;

    /// <summary>Path below the field System.Text.Json reports in <see cref="JsonException.Path"/>, e.g. <c>[1]</c>.</summary>
    public string SubPath { get; } = subPath;
}

/// <summary>
/// The reasons an incoming event is parked with (docs/publishing.md, "What happens to a bad
/// message"): each names the contract and the field by its JSON path as the publisher sent it
/// (<c>$.to[1]</c>), and says what is wrong — what was expected and what was found, a timestamp
/// out of range rather than "not ISO 8601", the required fields missing. MassTransit writes the
/// innermost exception's message into <c>MT-Fault-Message</c>, so the reason travels as the
/// message of a <see cref="JsonException"/> with no inner exception.
/// </summary>
public static class IncomingEventReasons
{
    /// <summary>
    /// The reason for <paramref name="error"/>, raised while reading <paramref name="message"/>
    /// (the event's JSON, when it could be parsed) as <paramref name="contract"/>.
    /// </summary>
    /// <param name="contract">The event's contract type, e.g. <c>EmailReceived</c>.</param>
    /// <param name="error">What System.Text.Json or a rule threw; its <see cref="JsonException.Path"/> names the field.</param>
    /// <param name="message">The message being read, to say what was found at the path; null when it is not JSON.</param>
    /// <param name="options">The options the contract was read with (property names, case sensitivity).</param>
    public static string Describe(Type contract, JsonException error, JsonElement? message, JsonSerializerOptions options)
    {
        var path = error.Path is { Length: > 0 } p ? p : "$";
        if (error is EventFieldException field)
            return At(contract, path + field.SubPath, field.Problem);
        if (path == "$" && message is { ValueKind: JsonValueKind.Object } root && MissingRequired(contract, root, options) is { Count: > 0 } missing)
            return missing.Count == 1
                ? $"{contract.Name}: required field $.{missing[0]} is missing."
                : $"{contract.Name}: required fields {string.Join(", ", missing.Select(m => "$." + m))} are missing.";

        var expected = ExpectedAt(contract, path, options);
        var found = message is { } json && Navigate(json, path) is { } value ? Found(value) : null;
        var problem = (expected, found) switch
        {
            (not null, not null) => $"expected {expected}, found {found}.",
            (not null, null) => $"expected {expected}.",
            _ => WithoutPathSuffix((error.InnerException ?? error).Message),
        };
        return At(contract, path, problem);
    }

    /// <summary>The JSON value at the reader's current token, in words: <c>the string "abc"</c>, <c>an object</c>, <c>null</c> ….</summary>
    public static string Found(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.String => StringInWords(ref reader),
        JsonTokenType.Number => $"the number {UtcTimestamp.Truncate(Encoding.UTF8.GetString(reader.ValueSpan))}",
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        JsonTokenType.Null => "null",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        var other => other.ToString(),
    };

    /// <summary>
    /// The reason for a message holding a string that is not valid Unicode (System.Text.Json then
    /// throws without a path): the path of the first such string in <paramref name="message"/>.
    /// </summary>
    public static string DescribeNotUnicode(Type contract, JsonElement? message) =>
        At(contract, message is { } json ? FirstNotUnicode(json, "$") ?? "$" : "$", $"found {NotUnicode}.");

    private static string? FirstNotUnicode(JsonElement value, string path)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return StringInWords(value) == NotUnicode ? path : null;
            case JsonValueKind.Object:
                foreach (var property in value.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (Exception ex) when (ex is InvalidOperationException or System.Text.DecoderFallbackException)
                    {
                        return path;
                    }
                    if (FirstNotUnicode(property.Value, $"{path}.{name}") is { } found) return found;
                }
                return null;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in value.EnumerateArray())
                    if (FirstNotUnicode(item, $"{path}[{i++}]") is { } found) return found;
                return null;
            default:
                return null;
        }
    }

    /// <summary>Not valid Unicode: a lone surrogate escape (<c>\ud800</c>) or bytes that are not UTF-8.</summary>
    private const string NotUnicode = "a string that is not valid Unicode (a lone surrogate escape or bytes that are not UTF-8)";

    private static string StringInWords(ref Utf8JsonReader reader)
    {
        try
        {
            return $"the string \"{UtcTimestamp.Truncate(reader.GetString()!)}\"";
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.Text.DecoderFallbackException)
        {
            return NotUnicode;
        }
    }

    private static string StringInWords(JsonElement value)
    {
        try
        {
            return $"the string \"{UtcTimestamp.Truncate(value.GetString()!)}\"";
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.Text.DecoderFallbackException)
        {
            return NotUnicode;
        }
    }

    /// <summary>A JSON value in words, as <see cref="Found(ref Utf8JsonReader)"/>.</summary>
    public static string Found(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => StringInWords(value),
        JsonValueKind.Number => $"the number {UtcTimestamp.Truncate(value.GetRawText())}",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Null => "null",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        var other => other.ToString(),
    };

    /// <summary>What a value of <paramref name="type"/> must be in JSON, in words (<c>a string</c>, <c>a UUID string</c> …).</summary>
    public static string Expected(Type type)
    {
        if (Nullable.GetUnderlyingType(type) is { } underlying) return Expected(underlying) + " or null";
        if (type == typeof(string)) return "a string";
        if (type == typeof(Guid)) return "a UUID string such as \"5f74c51c-86c0-4dc7-a368-47b42c116b63\"";
        if (type == typeof(DateTimeOffset) || type == typeof(DateTime)) return "a timestamp string such as \"2026-11-30T10:00:00Z\"";
        if (type == typeof(int)) return $"a whole number from {int.MinValue} to {int.MaxValue}";
        if (type == typeof(long)) return $"a whole number from {long.MinValue} to {long.MaxValue}";
        if (type == typeof(double) || type == typeof(float) || type == typeof(decimal)) return "a number";
        if (type == typeof(bool)) return "true or false";
        if (ElementType(type) is { } element)
            return element == typeof(string) ? "an array of strings" : $"an array whose items are each {Expected(element)}";
        return "an object";
    }

    private static string At(Type contract, string path, string problem) =>
        path == "$" ? $"{contract.Name} message: {problem}" : $"{contract.Name} field {path}: {problem}";

    /// <summary>System.Text.Json's own message ends in " Path: $.x | LineNumber: …"; the reason names the path already.</summary>
    private static string WithoutPathSuffix(string message) =>
        message.IndexOf(" Path: ", StringComparison.Ordinal) is var at and >= 0 ? message[..at] : message;

    private static List<string> MissingRequired(Type contract, JsonElement root, JsonSerializerOptions options)
    {
        var comparison = options.PropertyNameCaseInsensitive ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var present = root.EnumerateObject().Select(p => p.Name).ToList();
        return [.. options.GetTypeInfo(contract).Properties
            .Where(p => p.IsRequired && !present.Any(name => string.Equals(name, p.Name, comparison)))
            .Select(p => p.Name)];
    }

    /// <summary>The type the contract expects at <paramref name="path"/>, in words; null when the path leads nowhere known.</summary>
    private static string? ExpectedAt(Type contract, string path, JsonSerializerOptions options)
    {
        var type = contract;
        var comparison = options.PropertyNameCaseInsensitive ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        foreach (var segment in Segments(path))
        {
            if (segment.Index is not null)
            {
                if (ElementType(type) is not { } element) return null;
                type = element;
                continue;
            }
            var info = options.GetTypeInfo(type);
            if (info.Kind != JsonTypeInfoKind.Object) return null;
            var property = info.Properties.FirstOrDefault(p => string.Equals(p.Name, segment.Name, comparison));
            if (property is null) return null;
            type = property.PropertyType;
        }
        return Expected(type);
    }

    private static JsonElement? Navigate(JsonElement value, string path)
    {
        foreach (var segment in Segments(path))
        {
            if (segment.Index is { } index)
            {
                if (value.ValueKind != JsonValueKind.Array || index >= value.GetArrayLength()) return null;
                value = value[index];
                continue;
            }
            if (value.ValueKind != JsonValueKind.Object) return null;
            // The path spells the name as the publisher did; a case-insensitive match may differ.
            var match = value.EnumerateObject().FirstOrDefault(p => p.Name == segment.Name);
            if (match.Value.ValueKind == JsonValueKind.Undefined)
                match = value.EnumerateObject().FirstOrDefault(p => string.Equals(p.Name, segment.Name, StringComparison.OrdinalIgnoreCase));
            if (match.Value.ValueKind == JsonValueKind.Undefined) return null;
            value = match.Value;
        }
        return value;
    }

    private readonly record struct Segment(string? Name, int? Index);

    /// <summary>The segments of a System.Text.Json path: <c>$.to[1]</c>, <c>$['odd.name']</c>.</summary>
    private static IEnumerable<Segment> Segments(string path)
    {
        var i = path.StartsWith('$') ? 1 : 0;
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                var end = path.IndexOfAny(['.', '['], i + 1);
                if (end < 0) end = path.Length;
                yield return new Segment(path[(i + 1)..end], null);
                i = end;
            }
            else if (path.AsSpan(i).StartsWith("['"))
            {
                var end = path.IndexOf("']", i + 2, StringComparison.Ordinal);
                if (end < 0) yield break;
                yield return new Segment(path[(i + 2)..end], null);
                i = end + 2;
            }
            else if (path[i] == '[')
            {
                var end = path.IndexOf(']', i);
                if (end < 0 || !int.TryParse(path.AsSpan(i + 1, end - i - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var index)) yield break;
                yield return new Segment(null, index);
                i = end + 1;
            }
            else yield break;
        }
    }

    /// <summary>The item type of a collection type (not of <see cref="string"/>); null for anything else.</summary>
    internal static Type? ElementType(Type type)
    {
        if (type == typeof(string)) return null;
        if (type.IsArray) return type.GetElementType();
        var enumerable = type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IEnumerable<>)
            ? type
            : type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>));
        return enumerable?.GetGenericArguments()[0];
    }
}

/// <summary>
/// Reads each event contract through <see cref="IncomingEventReasons"/>: a failure anywhere in the
/// event becomes a <see cref="JsonException"/> whose message alone is the parked reason.
/// </summary>
/// <param name="inner">The same options without this factory, to read the contract itself.</param>
/// <param name="isContract">Which types are event contracts.</param>
internal sealed class ContractReasonsConverterFactory(JsonSerializerOptions inner, Func<Type, bool> isContract) : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) => isContract(typeToConvert);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(Converter<>).MakeGenericType(typeToConvert), inner)!;

    private sealed class Converter<T>(JsonSerializerOptions inner) : JsonConverter<T>
    {
        public override T? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            // A copy of the reader (a struct) at the event's start, to look at the JSON again on failure only.
            var start = reader;
            try
            {
                return JsonSerializer.Deserialize<T>(ref reader, inner);
            }
            catch (JsonException error)
            {
                JsonElement? message = null;
                try
                {
                    message = JsonElement.ParseValue(ref start);
                }
                catch (JsonException)
                {
                    // Not JSON after all: the reason names what could be read.
                }
                throw new JsonException(IncomingEventReasons.Describe(typeof(T), error, message, inner));
            }
            catch (Exception error) when (error is InvalidOperationException or System.Text.DecoderFallbackException)
            {
                // A lone surrogate escape or bytes that are not UTF-8: System.Text.Json names no path.
                JsonElement? message = null;
                try
                {
                    message = JsonElement.ParseValue(ref start);
                }
                catch (JsonException)
                {
                    // Not JSON after all.
                }
                throw new JsonException(IncomingEventReasons.DescribeNotUnicode(typeof(T), message));
            }
        }

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) =>
            JsonSerializer.Serialize(writer, value, inner);
    }
}
