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
    /// no turn came within <paramref name="maxWait"/>: the template was not tried. A check that runs
    /// out of time is made once more in the same turn, and only a second time out counts: a
    /// process's first renderings compile the template engine's code, which on a busy machine alone
    /// can take longer than the limit.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public static async Task<(string? Problem, bool NoTurn)> RenderErrorAsync(WebhookTemplate template, IEnumerable<string> eventTypes,
        int maxBodyBytes, TemplateRenderGate gate, string userId, TimeSpan maxWait, CancellationToken cancellationToken)
    {
        var examples = eventTypes.Select(type => EventCatalog.All.FirstOrDefault(e => e.Name == type)).OfType<EventTypeInfo>().ToList();
        string? problem = null;
        var rendered = await gate.RunAsync(userId, () =>
        {
            // Every example in the one turn: a turn per example would queue once per event type.
            var (first, timedOut) = Check(template, examples, maxBodyBytes);
            problem = timedOut ? Check(template, examples, maxBodyBytes).Problem : first;
            return new RenderedBody([], template.BodyContentType, null);
        }, cancellationToken, maxWait);
        return ReferenceEquals(rendered.Error, TemplateRenderGate.WaitedTooLong) ? (null, true) : (problem, false);
    }

    /// <summary>Renders every example within <see cref="TemplateRenderer.MaxCheckTime"/> in all: the first problem, and whether it was the time.</summary>
    private static (string? Problem, bool TimedOut) Check(WebhookTemplate template, IReadOnlyList<EventTypeInfo> examples, int maxBodyBytes)
    {
        var tooLong = $"Rendering the examples of its event types took longer than {TemplateRenderer.MaxCheckTime.TotalMilliseconds:0} ms in all.";
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        foreach (var info in examples)
        {
            var left = TemplateRenderer.MaxCheckTime - System.Diagnostics.Stopwatch.GetElapsedTime(started);
            if (left <= TimeSpan.Zero) return (tooLong, true);
            var result = TemplateRenderer.Render(template, ExamplePayload(info), maxBodyBytes, left);
            // Out of time: what was left of the whole check ran out, whatever this example's share
            // was. Measured as well as cancelled: the cancellation's timer runs on the thread pool,
            // which a busy process may not get to before a slow rendering has finished.
            if (result.Transient || System.Diagnostics.Stopwatch.GetElapsedTime(started) > TemplateRenderer.MaxCheckTime) return (tooLong, true);
            if (result.Error is not null) return ($"Rendering the {info.Name} example failed: {result.Error}", false);
        }
        return (null, false);
    }

    /// <summary>The catalog's example payload of <paramref name="eventType"/> as the UTF-8 bytes a delivery would carry.</summary>
    public static byte[] ExamplePayload(EventTypeInfo eventType) =>
        Encoding.UTF8.GetBytes(EventSchemas.ExamplePayload(eventType).ToJsonString(WebhookPayload.JsonOptions));

    /// <summary>A stored JSON column as the API shows it.</summary>
    public static JsonNode? Node(string? json) => json is null ? null : JsonNode.Parse(json);
}
