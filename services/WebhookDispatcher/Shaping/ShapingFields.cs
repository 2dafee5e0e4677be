using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Payloads;

namespace WebhookDispatcher.Shaping;

/// <summary>The <c>filter</c> and <c>template</c> of a create or update request, when present.</summary>
/// <param name="HasFilter">Whether <c>filter</c> was given (null removes it).</param>
/// <param name="Filter">The filter's compact JSON; null to remove.</param>
/// <param name="FilterPath">Its SQL/JSON path predicate; null with <paramref name="Filter"/>.</param>
/// <param name="HasTemplate">Whether <c>template</c> was given (null removes it).</param>
/// <param name="Template">The template's stored form; null to remove.</param>
public sealed record ShapingFields(bool HasFilter, string? Filter, string? FilterPath, bool HasTemplate, string? Template)
{
    /// <summary>Nothing given.</summary>
    public static readonly ShapingFields None = new(false, null, null, false, null);

    /// <summary>Whether the request changes the filter or the template.</summary>
    public bool Any => HasFilter || HasTemplate;

    /// <summary>The request fields this reads.</summary>
    public static readonly IReadOnlyList<string> Names = ["filter", "template"];

    /// <summary>
    /// Reads <c>filter</c> and <c>template</c> from a request body; errors go to <paramref name="error"/>
    /// keyed by the bad part (<c>filter.$or[0].data.to[].$in</c>, <c>template.liquid</c>). A template
    /// that parses is tried on the examples afterwards, in the caller's turn (<see cref="RenderErrorAsync"/>).
    /// </summary>
    public static ShapingFields Read(JsonElement body, Action<string, string> error)
    {
        var hasFilter = body.TryGetProperty("filter", out var f);
        string? filter = null, filterPath = null;
        if (hasFilter && f.ValueKind != JsonValueKind.Null)
        {
            var compiled = PayloadFilter.Compile(f);
            foreach (var (where, message) in compiled.Errors) error(where, message);
            (filter, filterPath) = (compiled.Json, compiled.JsonPath);
        }
        var hasTemplate = body.TryGetProperty("template", out var t);
        string? template = null;
        if (hasTemplate && t.ValueKind != JsonValueKind.Null)
        {
            var (read, errors) = WebhookTemplate.Read(t);
            foreach (var (where, message) in errors) error(where, message);
            template = read?.ToJson();
        }
        return new ShapingFields(hasFilter, filter, filterPath, hasTemplate, template);
    }

    /// <summary>
    /// Why <paramref name="template"/> fails on the example payloads of <paramref name="eventTypes"/>
    /// (a body over <paramref name="maxBodyBytes"/>, or all of them together taking more than
    /// <see cref="TemplateRenderer.MaxCheckTime"/>, included), or null; rendered in one of
    /// <paramref name="userId"/>'s turns (<see cref="TemplateRenderGate"/>), so that trying templates
    /// takes no more of the machine from other users than delivering them does. <c>NoTurn</c> when
    /// no turn came within <paramref name="maxWait"/>: the template was not tried.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public static async Task<(string? Problem, bool NoTurn)> RenderErrorAsync(WebhookTemplate template, IEnumerable<string> eventTypes,
        int maxBodyBytes, TemplateRenderGate gate, string userId, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        string? problem = null;
        var rendered = await gate.RunAsync(userId, () =>
        {
            // Every example in the one turn: a turn per example would queue once per event type.
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            foreach (var type in eventTypes)
            {
                if (EventCatalog.All.FirstOrDefault(e => e.Name == type) is not { } info) continue;
                var left = TemplateRenderer.MaxCheckTime - System.Diagnostics.Stopwatch.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    problem = $"Rendering the examples of its event types took longer than {TemplateRenderer.MaxCheckTime.TotalMilliseconds:0} ms in all.";
                    break;
                }
                var result = TemplateRenderer.Render(template, ExamplePayload(info), maxBodyBytes, left);
                if (result.Error is null) continue;
                problem = $"Rendering the {type} example failed: {result.Error}";
                break;
            }
            return new RenderedBody([], template.BodyContentType, null);
        }, cancellationToken, maxWait);
        return ReferenceEquals(rendered.Error, TemplateRenderGate.WaitedTooLong) ? (null, true) : (problem, false);
    }

    /// <summary>The catalog's example payload of <paramref name="eventType"/> as the UTF-8 bytes a delivery would carry.</summary>
    public static byte[] ExamplePayload(EventTypeInfo eventType) =>
        Encoding.UTF8.GetBytes(EventSchemas.ExamplePayload(eventType).ToJsonString(WebhookPayload.JsonOptions));

    /// <summary>A stored JSON column as the API shows it.</summary>
    public static JsonNode? Node(string? json) => json is null ? null : JsonNode.Parse(json);
}
