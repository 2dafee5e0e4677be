using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Fluid;
using Fluid.Values;
using Microsoft.Extensions.Caching.Memory;

namespace WebhookDispatcher.Shaping;

/// <summary>A template's rendering of one payload.</summary>
/// <param name="Body">The UTF-8 bytes to send; empty when <paramref name="Error"/> is set.</param>
/// <param name="ContentType">The body's <c>Content-Type</c>.</param>
/// <param name="Error">Why rendering failed, for people; null when it worked.</param>
/// <param name="Transient">Whether the failure may not happen again: the rendering ran out of time
/// (<see cref="TemplateRenderer.MaxRenderTime"/>, which a busy machine can cause) or never got its
/// turn (<see cref="TemplateRenderGate"/>). Other failures are the template's and repeat.</param>
public sealed record RenderedBody(byte[] Body, string ContentType, string? Error, bool Transient = false);

/// <summary>
/// Renders subscription templates (Liquid, Fluid.Core) over a payload, sandboxed and bounded: no
/// <c>include</c>/<c>render</c> (no file system) and no functions; at most <see cref="MaxSteps"/>
/// statements, <see cref="MaxOutputChars"/> characters of output (a <c>capture</c> or
/// <c>append</c> chain included), <see cref="MaxCollectionItems"/> items in any range or array, a
/// nesting of <see cref="MaxRecursion"/>, and <see cref="MaxRenderTime"/>. Rendering is
/// deterministic: the model is the payload alone, <c>now</c> is the event's <c>created_at</c>, the
/// culture invariant and the zone UTC, so every attempt of a delivery renders the same bytes while
/// the template is unchanged. Parsed templates are cached by subscription id and template text.
/// </summary>
/// <remarks>
/// The model: <c>id</c>, <c>event_type</c>, <c>created_at</c> and <c>data</c> as in the payload,
/// and <c>payload</c>, the payload's JSON text. Output is not escaped (the <c>json</c> filter writes a
/// JSON value, <c>to_text</c> a string as it is and anything else as compact JSON).
/// </remarks>
public sealed class TemplateRenderer : IDisposable
{
    /// <summary>Most statements one rendering executes.</summary>
    public const int MaxSteps = 100_000;

    /// <summary>Most characters one rendering (or one captured block) writes.</summary>
    public const int MaxOutputChars = 256 * 1024;

    /// <summary>Most items a range or array operation may make.</summary>
    public const int MaxCollectionItems = 10_000;

    /// <summary>Deepest nesting of blocks while rendering.</summary>
    public const int MaxRecursion = 20;

    /// <summary>Longest a rendering may take before it is cancelled.</summary>
    public static readonly TimeSpan MaxRenderTime = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Longest a catalog example may take to render when a template is saved: a quarter of
    /// <see cref="MaxRenderTime"/>, so a saved template has room at attempt time on a busy machine.
    /// </summary>
    public static readonly TimeSpan MaxCheckTime = MaxRenderTime / 4;

    /// <summary>Parsed templates kept (each holds its subscription's template).</summary>
    public const int CachedTemplates = 10_000;

    private static readonly FluidParser Parser = CreateParser();
    private static readonly JsonSerializerOptions JsonFilterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
    };
    private static readonly TemplateOptions Options = CreateOptions();

    private readonly MemoryCache _parsed = new(new MemoryCacheOptions { SizeLimit = CachedTemplates });

    private sealed record Parsed(string Json, IFluidTemplate Template, string ContentType);

    /// <summary>Why <paramref name="liquid"/> does not parse, with its line and column, or null when it does.</summary>
    public static string? ParseError(string liquid)
    {
        try
        {
            Parser.Parse(liquid);
            return null;
        }
        catch (ParseException ex)
        {
            var where = ex.Position is { } p ? $"Line {p.Line}, column {p.Column}: " : "";
            var message = ex.Message.Split('\n')[0];
            var at = message.LastIndexOf(" at (", StringComparison.Ordinal);
            return where + (at > 0 ? message[..at] : message) + ".";
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return "Does not parse: " + ex.Message.Split('\n')[0];
        }
    }

    /// <summary>
    /// Renders the stored template <paramref name="templateJson"/> of <paramref name="subscriptionId"/>
    /// over <paramref name="payload"/>, parsing it once per subscription and template text. Never
    /// throws; a body over <paramref name="maxBodyBytes"/> bytes of UTF-8 (the body cap,
    /// <c>Delivery:MaxEventBytes</c>) is an error, as a template that fails is.
    /// </summary>
    public RenderedBody Render(Guid subscriptionId, string templateJson, byte[] payload, int maxBodyBytes)
    {
        var key = (subscriptionId, templateJson.GetHashCode(StringComparison.Ordinal));
        if (!_parsed.TryGetValue(key, out Parsed? parsed) || parsed is null || parsed.Json != templateJson)
        {
            try
            {
                var template = WebhookTemplate.FromJson(templateJson);
                parsed = new Parsed(templateJson, Parser.Parse(template.Source), template.BodyContentType);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                return new RenderedBody([], WebhookTemplate.DefaultContentType, "The template does not parse: " + ex.Message.Split('\n')[0]);
            }
            _parsed.Set(key, parsed, new MemoryCacheEntryOptions { Size = 1, SlidingExpiration = TimeSpan.FromMinutes(10) });
        }
        return Render(parsed.Template, parsed.ContentType, payload, maxBodyBytes, MaxRenderTime);
    }

    /// <summary>
    /// Renders <paramref name="template"/> over <paramref name="payload"/> without caching (previews,
    /// tests, checks) within <paramref name="timeLimit"/> (<see cref="MaxRenderTime"/> when null).
    /// Never throws; a body over <paramref name="maxBodyBytes"/> bytes of UTF-8 is an error.
    /// </summary>
    public static RenderedBody Render(WebhookTemplate template, byte[] payload, int maxBodyBytes, TimeSpan? timeLimit = null)
    {
        IFluidTemplate parsed;
        try
        {
            parsed = Parser.Parse(template.Source);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return new RenderedBody([], template.BodyContentType, "The template does not parse: " + ex.Message.Split('\n')[0]);
        }
        return Render(parsed, template.BodyContentType, payload, maxBodyBytes, timeLimit ?? MaxRenderTime);
    }

    private static RenderedBody Render(IFluidTemplate template, string contentType, byte[] payload, int maxBodyBytes, TimeSpan timeLimit)
    {
        try
        {
            var root = JsonNode.Parse(payload)!.AsObject();
            var model = (Dictionary<string, object?>)Model(root)!;
            model["payload"] = Encoding.UTF8.GetString(payload);
            var createdAt = root["created_at"]?.GetValue<string>() is { } text
                            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : DateTimeOffset.UnixEpoch;
            using var timeout = new CancellationTokenSource(timeLimit);
            var context = new TemplateContext(model, Options) { Now = () => createdAt, CancellationToken = timeout.Token };
            var output = template.Render(context, NullEncoder.Default);
            // The output limit counts characters; the body cap, bytes: a character is up to 3 bytes.
            var size = Encoding.UTF8.GetByteCount(output);
            if (size > maxBodyBytes)
                return new RenderedBody([], contentType,
                    $"The rendered body is {size} bytes of UTF-8, over the {maxBodyBytes}-byte cap on a body (Delivery:MaxEventBytes).");
            return new RenderedBody(Encoding.UTF8.GetBytes(output), contentType, null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            var timedOut = ex is OperationCanceledException;
            var message = timedOut
                ? timeLimit >= TimeSpan.FromSeconds(1) ? $"Rendering took longer than {timeLimit.TotalSeconds:0} s." : $"Rendering took longer than {timeLimit.TotalMilliseconds:0} ms."
                : ex.Message.Split('\n')[0];
            return new RenderedBody([], contentType, "The template failed to render: " + (message.Length > 500 ? message[..500] + "…" : message), timedOut);
        }
    }

    /// <summary>A JSON value as the plain objects Fluid reads: dictionaries, lists, strings, decimals, booleans, nulls.</summary>
    private static object? Model(JsonNode? node) => node switch
    {
        null => null,
        JsonObject o => o.ToDictionary(p => p.Key, p => Model(p.Value), StringComparer.Ordinal),
        JsonArray a => a.Select(Model).ToList(),
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => v.GetValue<string>(),
            JsonValueKind.Number => v.TryGetValue<decimal>(out var d) ? d : v.GetValue<double>(),
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => null,
        },
        _ => null,
    };

    private static FluidParser CreateParser()
    {
        var parser = new FluidParser(new FluidParserOptions { AllowFunctions = false });
        // No file system: the tags that read other templates do not exist here.
        parser.RegisteredTags.Remove("include");
        parser.RegisteredTags.Remove("render");
        return parser;
    }

    private static TemplateOptions CreateOptions() =>
        new TemplateOptionsBuilder()
            .WithMaxSteps(MaxSteps)
            .WithMaxOutputSize(MaxOutputChars)
            .WithMaxCollectionSize(MaxCollectionItems)
            .WithMaxRecursion(MaxRecursion)
            .WithStrictFilters(true)
            .WithCultureInfo(CultureInfo.InvariantCulture)
            .WithTimeZone(TimeZoneInfo.Utc)
            .WithJsonSerializerOptions(JsonFilterOptions)
            .AddFilter("to_text", (input, arguments, context) =>
                input is StringValue
                    ? ValueTask.FromResult(input)
                    : context.Options.Filters.TryGetValue("json", out var json) ? json(input, arguments, context) : ValueTask.FromResult<FluidValue>(StringValue.Empty))
            .Build();

    /// <inheritdoc />
    public void Dispose() => _parsed.Dispose();
}
