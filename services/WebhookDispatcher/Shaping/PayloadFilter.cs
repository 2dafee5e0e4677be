using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Shaping;

/// <summary>
/// A subscription's payload filter: a small JSON language over the payload subscribers receive
/// (<see cref="WebhookPayload"/>), checked once at create/update and translated into a PostgreSQL
/// SQL/JSON path predicate that the fan-out's INSERT evaluates (<c>payload::jsonb @@ filter_path</c>),
/// so filtering costs no statement of its own. The syntax follows the MongoDB-style operators of
/// Convoy's filters (<c>{"data.from": {"$eq": …}}</c>); docs/webhooks.md describes it with examples.
/// </summary>
/// <remarks>
/// <para>A filter is an object whose entries must all hold. An entry is <c>"$and": [filter, …]</c>,
/// <c>"$or": [filter, …]</c>, <c>"$not": filter</c>, or a path with a value (equality) or an object
/// of operators (all must hold): <c>$eq</c>, <c>$ne</c>, <c>$in</c>, <c>$nin</c>, <c>$gt</c>,
/// <c>$gte</c>, <c>$lt</c>, <c>$lte</c> (a number, or an RFC 3339 timestamp compared with the payload's
/// UTC timestamps), <c>$exists</c>, <c>$prefix</c> and <c>$contains</c> (strings, case-sensitive).</para>
/// <para>A path is dotted names (<c>data.from</c>) starting at <c>id</c>, <c>event_type</c>,
/// <c>created_at</c> or <c>data</c>; a name followed by <c>[]</c> (<c>data.to[]</c>) means any element
/// of that array, and a path that reaches an array compares each element. A condition on a path
/// holds when some value at the path satisfies it; <c>$ne</c>, <c>$nin</c> and <c>$exists: false</c>
/// hold when none does (so also when the path is missing).</para>
/// </remarks>
public static partial class PayloadFilter
{
    /// <summary>Deepest nesting of <c>$and</c>/<c>$or</c>/<c>$not</c> (the top-level object is depth 1).</summary>
    public const int MaxDepth = 5;

    /// <summary>Most conditions in one filter: every path operator and every <c>$in</c>/<c>$nin</c> value counts one.</summary>
    public const int MaxNodes = 50;

    /// <summary>Largest filter, in bytes of its compact UTF-8 JSON.</summary>
    public const int MaxBytes = 4096;

    /// <summary>The names a path may start with: the payload's envelope fields.</summary>
    public static readonly IReadOnlyList<string> Roots = WebhookPayload.EnvelopeFields;

    /// <summary>The operators, in the order the docs list them.</summary>
    public static readonly IReadOnlyList<string> Operators =
        ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$prefix", "$contains"];

    /// <summary>The result of <see cref="Compile"/>.</summary>
    /// <param name="Json">The filter as compact JSON (what the API shows back); null when invalid.</param>
    /// <param name="JsonPath">The SQL/JSON path predicate (PostgreSQL <c>jsonpath</c>) that holds exactly when the filter does; null when invalid.</param>
    /// <param name="Errors">Each bad part's location (<c>filter.$and[1].data.x.$gt</c>) and what is wrong with it; empty when valid.</param>
    public sealed record Compiled(string? Json, string? JsonPath, IReadOnlyList<(string Where, string Message)> Errors);

    /// <summary>
    /// Validates <paramref name="filter"/> and translates it; reports at most 10 errors, each naming
    /// its part as a path from <paramref name="field"/>.
    /// </summary>
    /// <param name="filter">The filter's JSON (an object).</param>
    /// <param name="field">The name of the request field holding it, the root of error locations.</param>
    public static Compiled Compile(JsonElement filter, string field = "filter")
    {
        var compiler = new Compiler();
        var json = JsonSerializer.Serialize(filter);
        if (Encoding.UTF8.GetByteCount(json) > MaxBytes)
            return new(null, null, [(field, $"At most {MaxBytes} bytes of JSON.")]);
        var path = compiler.Filter(filter, field, depth: 1);
        if (compiler.Nodes > MaxNodes) compiler.Error(field, $"At most {MaxNodes} conditions (every operator and every $in value counts one); this has {compiler.Nodes}.");
        return compiler.Errors.Count > 0 ? new(null, null, compiler.Errors) : new(json, path, []);
    }

    private sealed class Compiler
    {
        public List<(string, string)> Errors { get; } = [];
        public int Nodes { get; private set; }

        public void Error(string where, string message)
        {
            if (Errors.Count < 10) Errors.Add((where, message));
        }

        public string Filter(JsonElement filter, string where, int depth)
        {
            if (depth > MaxDepth)
            {
                Error(where, $"Nested too deep: at most {MaxDepth} levels of $and, $or and $not.");
                return "false";
            }
            if (filter.ValueKind != JsonValueKind.Object)
            {
                Error(where, "Expects an object of conditions, e.g. {\"data.from\": \"a@example.com\"}.");
                return "false";
            }
            var parts = new List<string>();
            foreach (var entry in filter.EnumerateObject())
            {
                if (Errors.Count >= 10) break;
                var at = $"{where}.{entry.Name}";
                switch (entry.Name)
                {
                    case "$and" or "$or":
                        if (entry.Value.ValueKind != JsonValueKind.Array || entry.Value.GetArrayLength() == 0)
                        {
                            Error(at, "Expects a non-empty array of filters.");
                            break;
                        }
                        var items = entry.Value.EnumerateArray().Select((item, i) => Filter(item, $"{at}[{i}]", depth + 1)).ToList();
                        parts.Add("(" + string.Join(entry.Name == "$and" ? " && " : " || ", items) + ")");
                        break;
                    case "$not":
                        parts.Add("!(" + Filter(entry.Value, at, depth + 1) + ")");
                        break;
                    default:
                        if (entry.Name.StartsWith('$')) Error(at, "Unknown combinator: use $and, $or or $not, or a path such as data.from.");
                        else if (PathError(entry.Name) is { } problem) Error(at, problem);
                        else parts.Add(Conditions(JsonPathOf(entry.Name), entry.Value, at));
                        break;
                }
            }
            if (parts.Count == 0 && Errors.Count == 0) Error(where, "Expects at least one condition.");
            return parts.Count == 1 ? parts[0] : "(" + string.Join(" && ", parts) + ")";
        }

        private string Conditions(string path, JsonElement value, string at)
        {
            if (value.ValueKind != JsonValueKind.Object) return Condition(path, "$eq", value, $"{at}");
            var parts = new List<string>();
            foreach (var op in value.EnumerateObject())
                parts.Add(Condition(path, op.Name, op.Value, $"{at}.{op.Name}"));
            if (parts.Count == 0) Error(at, "Expects a value or an object of operators, e.g. {\"$eq\": \"x\"}.");
            return parts.Count == 1 ? parts[0] : "(" + string.Join(" && ", parts) + ")";
        }

        private string Condition(string path, string op, JsonElement operand, string at)
        {
            Nodes++;
            switch (op)
            {
                case "$eq":
                case "$ne":
                    return Scalar(operand, at) is { } literal
                        ? (op == "$ne" ? "!" : "") + $"exists({path} ? (@ == {literal}))"
                        : "false";
                case "$in":
                case "$nin":
                    if (operand.ValueKind != JsonValueKind.Array || operand.GetArrayLength() == 0)
                    {
                        Error(at, "Expects a non-empty array of strings, numbers, booleans or nulls.");
                        return "false";
                    }
                    Nodes += operand.GetArrayLength() - 1;
                    var literals = operand.EnumerateArray().Select((item, i) => Scalar(item, $"{at}[{i}]")).ToList();
                    if (literals.Any(l => l is null)) return "false";
                    return (op == "$nin" ? "!" : "") + $"exists({path} ? ({string.Join(" || ", literals.Select(l => "@ == " + l))}))";
                case "$gt" or "$gte" or "$lt" or "$lte":
                    var comparison = op switch { "$gt" => ">", "$gte" => ">=", "$lt" => "<", _ => "<=" };
                    if (operand.ValueKind == JsonValueKind.Number && operand.TryGetDecimal(out _))
                        return $"exists({path} ? (@ {comparison} {operand.GetRawText()}))";
                    if (operand.ValueKind == JsonValueKind.String && Rfc3339(operand.GetString()!) is { } time)
                        // Payload timestamps are all written in one fixed-width UTC format, so they
                        // order as strings; other strings at the path are left out.
                        return $"exists({path} ? (@ like_regex {Literal(TimestampRegex)} && @ {comparison} {Literal(UtcTimestamp.ToPayloadString(time))}))";
                    Error(at, "Expects a number or an RFC 3339 timestamp with its offset, e.g. 2026-12-01T10:00:00Z.");
                    return "false";
                case "$exists":
                    if (operand.ValueKind is JsonValueKind.True) return $"exists({path})";
                    if (operand.ValueKind is JsonValueKind.False) return $"!exists({path})";
                    Error(at, "Expects true or false.");
                    return "false";
                case "$prefix" or "$contains":
                    if (operand.ValueKind != JsonValueKind.String || operand.GetString()!.Length == 0)
                    {
                        Error(at, "Expects a non-empty string.");
                        return "false";
                    }
                    var text = Text(operand.GetString()!, at);
                    return op == "$prefix"
                        ? $"exists({path} ? (@ starts with {text}))"
                        : $"exists({path} ? (@ like_regex {text} flag \"q\"))"; // q: the pattern is a literal string
                default:
                    Error(at, $"Unknown operator. Operators: {string.Join(", ", Operators)}.");
                    return "false";
            }
        }

        /// <summary>A string operand as a path literal; U+0000 is refused (no stored payload can hold it: PostgreSQL's jsonb and text cannot).</summary>
        private string Text(string text, string at)
        {
            if (!text.Contains('\0', StringComparison.Ordinal)) return Literal(text);
            Error(at, "Must not contain U+0000 (\\u0000): no payload can hold it, so it would never match.");
            return "false";
        }

        private string? Scalar(JsonElement value, string at)
        {
            switch (value.ValueKind)
            {
                case JsonValueKind.String: return Text(value.GetString()!, at);
                case JsonValueKind.True: return "true";
                case JsonValueKind.False: return "false";
                case JsonValueKind.Null: return "null";
                case JsonValueKind.Number when value.TryGetDecimal(out _): return value.GetRawText();
                case JsonValueKind.Number:
                    Error(at, "Number out of range.");
                    return null;
                default:
                    Error(at, "Expects a string, number, boolean or null (objects and arrays are not compared).");
                    return null;
            }
        }
    }

    private const string TimestampRegex = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$";

    /// <summary>What is wrong with a path, or null when it is valid.</summary>
    private static string? PathError(string path)
    {
        if (path.Length > 256) return "A path has at most 256 characters.";
        if (!PathSyntax().IsMatch(path))
            return "Not a path: dotted names of letters, digits, _ or -, each optionally followed by [] (any element), e.g. data.to[].";
        var root = path.Split('.')[0].TrimEnd('[', ']');
        return Roots.Contains(root) ? null : $"A path starts with one of {string.Join(", ", Roots)} (the payload's fields), e.g. data.{root}.";
    }

    private static string JsonPathOf(string path)
    {
        var sb = new StringBuilder("$");
        foreach (var segment in path.Split('.'))
        {
            var any = segment.EndsWith("[]", StringComparison.Ordinal);
            sb.Append(".\"").Append(any ? segment[..^2] : segment).Append('"');
            if (any) sb.Append("[*]");
        }
        return sb.ToString();
    }

    /// <summary>A SQL/JSON path string literal: quotes, backslashes and control characters escaped.</summary>
    private static string Literal(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (var c in text)
        {
            if (c is '"' or '\\') sb.Append('\\').Append(c);
            else if (c < 0x20 || c == 0x7f) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    private static DateTimeOffset? Rfc3339(string text) =>
        text.Length <= 64 && Rfc3339Syntax().IsMatch(text) && UtcTimestamp.TryParse(text, out var time) ? time : null;

    [GeneratedRegex(@"^[A-Za-z0-9_-]+(\[\])?(\.[A-Za-z0-9_-]+(\[\])?)*$")]
    private static partial Regex PathSyntax();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|z|[+-]\d{2}:\d{2})$")]
    private static partial Regex Rfc3339Syntax();
}
