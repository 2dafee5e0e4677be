using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace WebhookDispatcher.Shaping;

/// <summary>
/// A subscription's template (column <c>template</c>, compact JSON): either a built-in by name,
/// <c>{"builtin": "slack"}</c>, or its own Liquid with the content type of what it renders,
/// <c>{"liquid": "…", "content_type": "application/json"}</c>. Null (no template) sends the payload
/// JSON as it is.
/// </summary>
/// <param name="Builtin">The name of a <see cref="BuiltInTemplates"/> entry.</param>
/// <param name="Liquid">A Liquid template, at most <see cref="MaxLiquidChars"/> characters.</param>
/// <param name="ContentType">The <c>Content-Type</c> of a Liquid template's body; <see cref="DefaultContentType"/> when absent.</param>
public sealed record WebhookTemplate(
    [property: JsonPropertyName("builtin"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Builtin,
    [property: JsonPropertyName("liquid"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Liquid,
    [property: JsonPropertyName("content_type"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ContentType)
{
    /// <summary>Longest Liquid source, in characters.</summary>
    public const int MaxLiquidChars = 16 * 1024;

    /// <summary>Longest <see cref="ContentType"/>, in characters.</summary>
    public const int MaxContentTypeChars = 128;

    /// <summary>The content type of a Liquid template that names none.</summary>
    public const string DefaultContentType = "application/json";

    /// <summary>The Liquid source to render: the built-in's or the subscription's own.</summary>
    [JsonIgnore]
    public string Source => Builtin is not null ? BuiltInTemplates.All[Builtin].Liquid : Liquid!;

    /// <summary>The body's content type.</summary>
    [JsonIgnore]
    public string BodyContentType => Builtin is not null ? BuiltInTemplates.All[Builtin].ContentType : ContentType ?? DefaultContentType;

    /// <summary>The stored form (compact JSON).</summary>
    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>Reads the stored form.</summary>
    /// <exception cref="JsonException">Not a template's stored form.</exception>
    public static WebhookTemplate FromJson(string json) => JsonSerializer.Deserialize<WebhookTemplate>(json) ?? throw new JsonException("null template");

    /// <summary>
    /// Validates a request's <c>template</c> value (an object; null is handled by the caller) and
    /// parses its Liquid, so a template that cannot parse is refused at create/update with its line
    /// and column. Errors are keyed by the part they name (<c>template.liquid</c> …).
    /// </summary>
    public static (WebhookTemplate? Template, List<(string Where, string Message)> Errors) Read(JsonElement value, string field = "template")
    {
        var errors = new List<(string, string)>();
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add((field, $"Expects null, {{\"builtin\": \"{string.Join("|", BuiltInTemplates.All.Keys)}\"}} or {{\"liquid\": \"…\", \"content_type\": \"…\"}}."));
            return (null, errors);
        }
        foreach (var p in value.EnumerateObject().Where(p => p.Name is not ("builtin" or "liquid" or "content_type")))
            errors.Add(($"{field}.{p.Name}", "Unknown field. Accepted fields: builtin, or liquid and content_type."));
        var hasBuiltin = value.TryGetProperty("builtin", out var builtin);
        var hasLiquid = value.TryGetProperty("liquid", out var liquid);
        var hasContentType = value.TryGetProperty("content_type", out var contentType);
        if (hasBuiltin == hasLiquid)
        {
            errors.Add((field, "Give either builtin (a template by name) or liquid (your own), not both or neither."));
            return (null, errors);
        }
        if (hasBuiltin)
        {
            if (hasContentType) errors.Add(($"{field}.content_type", "A built-in template sets its own content type."));
            if (builtin.ValueKind != JsonValueKind.String || !BuiltInTemplates.All.ContainsKey(builtin.GetString()!))
                errors.Add(($"{field}.builtin", $"Expects one of {string.Join(", ", BuiltInTemplates.All.Keys)}."));
            return errors.Count > 0 ? (null, errors) : (new WebhookTemplate(builtin.GetString(), null, null), errors);
        }
        string? type = null;
        if (hasContentType)
        {
            if (contentType.ValueKind != JsonValueKind.String) errors.Add(($"{field}.content_type", "Expects a string, e.g. application/json."));
            else if (contentType.GetString()!.Length > MaxContentTypeChars) errors.Add(($"{field}.content_type", $"At most {MaxContentTypeChars} characters."));
            else if (!MediaTypeHeaderValue.TryParse(contentType.GetString(), out var parsed) || parsed.MediaType?.Contains('/') != true)
                errors.Add(($"{field}.content_type", "Not a media type (RFC 9110), e.g. application/json or text/plain; charset=utf-8."));
            else if (parsed.Parameters.Count(p => p.Name.StartsWith("charset", StringComparison.OrdinalIgnoreCase)) > 1
                     || parsed.Parameters.Any(p => p.Name.Equals("charset*", StringComparison.OrdinalIgnoreCase))
                     || parsed.CharSet is { } charset && !charset.Trim('"').Equals("utf-8", StringComparison.OrdinalIgnoreCase))
                // The body is always UTF-8: a receiver honouring another charset would read other text than was signed.
                errors.Add(($"{field}.content_type", "The body is always UTF-8: a charset parameter, if given, must be utf-8, once."));
            else type = parsed.ToString();
        }
        if (liquid.ValueKind != JsonValueKind.String || liquid.GetString()!.Length == 0)
            errors.Add(($"{field}.liquid", "Expects a non-empty string of Liquid."));
        else if (liquid.GetString()!.Length > MaxLiquidChars)
            errors.Add(($"{field}.liquid", $"At most {MaxLiquidChars} characters."));
        else if (TemplateRenderer.ParseError(liquid.GetString()!) is { } problem)
            errors.Add(($"{field}.liquid", problem));
        return errors.Count > 0 ? (null, errors) : (new WebhookTemplate(null, liquid.GetString(), type), errors);
    }
}
