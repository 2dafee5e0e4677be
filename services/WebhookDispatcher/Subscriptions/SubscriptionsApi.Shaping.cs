using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Notely.Events;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Shaping;

namespace WebhookDispatcher.Subscriptions;

/// <summary>The body of <c>POST /api/webhooks/{id}/preview</c> (all optional).</summary>
/// <param name="EventType">The event type whose catalog example is rendered; the subscription's first event type when absent.</param>
/// <param name="Template">A template to try instead of the stored one (same form as the subscription's <c>template</c>); nothing is stored.</param>
/// <param name="Filter">A filter to try instead of the stored one; nothing is stored.</param>
public sealed record PreviewRequest(string? EventType, JsonElement? Template, JsonElement? Filter);

/// <summary>What a delivery of the example event would send (<c>POST /api/webhooks/{id}/preview</c>).</summary>
/// <param name="EventType">The event type of the example.</param>
/// <param name="FilterMatches">Whether the filter selects the example (true without a filter): false means such an event makes no delivery.</param>
/// <param name="ContentType">The request's <c>Content-Type</c>.</param>
/// <param name="Body">The exact body, as UTF-8 text.</param>
/// <param name="Headers">The headers an attempt now would send besides <c>Content-Type</c>, <c>Content-Length</c> and <c>User-Agent</c>, signatures over <paramref name="Body"/> included.</param>
public sealed record PreviewResponse(string EventType, bool FilterMatches, string ContentType, string Body, IReadOnlyDictionary<string, string> Headers);

/// <summary>The filter language and the built-in templates, served with the event catalog.</summary>
/// <param name="Operators">The operators a path condition may use.</param>
/// <param name="Roots">The names a path starts with.</param>
/// <param name="MaxDepth">Deepest nesting of <c>$and</c>/<c>$or</c>/<c>$not</c>.</param>
/// <param name="MaxConditions">Most conditions (each operator and each <c>$in</c> value).</param>
/// <param name="MaxBytes">Largest filter, in bytes of JSON.</param>
/// <param name="Examples">Example filters with what they select.</param>
/// <param name="Documentation">Where the language is described.</param>
public sealed record FilterSyntaxResponse(IReadOnlyList<string> Operators, IReadOnlyList<string> Roots, int MaxDepth, int MaxConditions, int MaxBytes,
    IReadOnlyList<FilterExample> Examples, string Documentation)
{
    /// <summary>The one answer.</summary>
    public static readonly FilterSyntaxResponse Instance = new(PayloadFilter.Operators, PayloadFilter.Roots, PayloadFilter.MaxDepth,
        PayloadFilter.MaxNodes, PayloadFilter.MaxBytes,
        [
            new("Emails from one sender", JsonDocument.Parse("""{"data.from": "alice@example.com"}""").RootElement),
            new("Emails to anyone at example.com", JsonDocument.Parse("""{"data.to[]": {"$contains": "@example.com"}}""").RootElement),
            new("Tasks titled \"Urgent…\" or due before December", JsonDocument.Parse("""{"$or": [{"data.title": {"$prefix": "Urgent"}}, {"data.due_date": {"$lt": "2026-12-01T00:00:00Z"}}]}""").RootElement),
            new("Exports of at least 1 MB with a file", JsonDocument.Parse("""{"data.size_bytes": {"$gte": 1000000}, "data.download_url": {"$exists": true}}""").RootElement),
            new("Anything but drafts", JsonDocument.Parse("""{"$not": {"data.subject": {"$prefix": "[draft]"}}}""").RootElement),
        ],
        "docs/webhooks.md#filters");
}

/// <summary>An example filter.</summary>
/// <param name="Description">What it selects.</param>
/// <param name="Filter">The filter.</param>
public sealed record FilterExample(string Description, JsonElement Filter);

/// <summary>A built-in template as the catalog lists it.</summary>
/// <param name="Name">Its name (<c>{"builtin": name}</c>).</param>
/// <param name="ContentType">The body's content type.</param>
/// <param name="Description">What receives it.</param>
/// <param name="Liquid">Its Liquid source, to copy and change.</param>
public sealed record BuiltInTemplateResponse(string Name, string ContentType, string Description, string Liquid)
{
    /// <summary>All built-ins.</summary>
    public static readonly IReadOnlyList<BuiltInTemplateResponse> All =
        [.. BuiltInTemplates.All.Values.Select(t => new BuiltInTemplateResponse(t.Name, t.ContentType, t.Description, t.Liquid))];
}

/// <content>Filters and templates: the preview of what a delivery would send.</content>
public static partial class SubscriptionsApi
{
    private static void MapShaping(RouteGroupBuilder one) =>
        WithJsonBody(one.MapPost("/preview", Preview).Accepts<PreviewRequest>("application/json")).WithName("PreviewWebhook")
            .WithSummary("Render an event type's example payload with the subscription's template (or one given) and say whether its filter selects it")
            .WithDescription("Nothing is sent or stored. 422 when the template fails to render the example (the message says why). " +
                             "429 with Retry-After when no turn to render came within 5 s (renderings take turns; users whose templates took the most time lately wait longest). " +
                             "A POST: a read-only portal session gets 403 like on every POST.")
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status403Forbidden);

    /// <summary>The 429 of a request whose rendering got no turn within <see cref="RenderWait"/>.</summary>
    private static ProblemHttpResult TooManyRenderings(HttpResponse response)
    {
        response.Headers.RetryAfter = "10";
        return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many template renderings",
            detail: TemplateRenderGate.WaitedTooLong + " Try again later.",
            extensions: new Dictionary<string, object?> { ["retry_after_seconds"] = 10 });
    }

    private static async Task<Results<Ok<PreviewResponse>, ValidationProblem, ProblemHttpResult>> Preview(
        Guid id, HttpRequest request, [AsParameters] ApiServices services, NpgsqlDataSource database, SubscriptionSigner signer,
        CancellationToken cancellationToken)
    {
        var s = await services.Owned().FirstOrDefaultAsync(x => x.Id == id, cancellationToken);
        if (s is null) return NotFound(id);
        JsonDocument? document = null;
        if (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            var (read, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
            if (refused is not null) return refused;
            if (invalid is not null) return invalid;
            document = read;
        }
        using var body = document;
        var errors = new Dictionary<string, string[]>();
        var eventType = s.EventTypes[0];
        var filterPath = s.FilterPath;
        var template = s.Template is null ? null : WebhookTemplate.FromJson(s.Template);
        if (body is not null)
        {
            var root = body.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return ApiInput.Invalid("body", "The request body must be a JSON object.");
            foreach (var p in root.EnumerateObject().Where(p => p.Name is not ("event_type" or "template" or "filter")))
                errors[p.Name] = ["Unknown field. Accepted fields: event_type, template, filter."];
            if (root.TryGetProperty("event_type", out var e))
            {
                if (e.ValueKind == JsonValueKind.String && EventCatalog.IsKnown(e.GetString()!)) eventType = e.GetString()!;
                else errors["event_type"] = ["Must be a known event type; see GET /api/webhooks/event-types."];
            }
            if (root.TryGetProperty("template", out var t))
            {
                var (given, problems) = t.ValueKind == JsonValueKind.Null ? (null, []) : WebhookTemplate.Read(t);
                foreach (var (where, message) in problems) errors[where] = [message];
                template = given;
            }
            if (root.TryGetProperty("filter", out var f))
            {
                var compiled = f.ValueKind == JsonValueKind.Null ? new PayloadFilter.Compiled(null, null, []) : PayloadFilter.Compile(f);
                foreach (var (where, message) in compiled.Errors) errors[where] = [message];
                filterPath = compiled.JsonPath;
            }
        }
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        var payload = ShapingFields.ExamplePayload(EventCatalog.All.First(x => x.Name == eventType));
        var matches = filterPath is null || await MatchesAsync(database, payload, filterPath, cancellationToken);
        var rendered = template is null
            ? new RenderedBody(payload, "application/json; charset=utf-8", null)
            : await services.Renders.RunAsync(services.UserId,
                () => TemplateRenderer.Render(template, payload, services.Delivery.Value.MaxEventBytes), cancellationToken, RenderWait);
        if (ReferenceEquals(rendered.Error, TemplateRenderGate.WaitedTooLong))
            return TooManyRenderings(request.HttpContext.Response);
        if (rendered.Error is not null)
            return TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity, title: "The template failed",
                detail: rendered.Error, extensions: new Dictionary<string, object?> { ["field"] = "template", ["event_type"] = eventType });
        var now = services.Time.GetUtcNow();
        var eventId = JsonDocument.Parse(payload).RootElement.GetProperty("id").GetGuid();
        var signed = signer.Create(s, rendered.Body, eventType, Guid.Empty, eventId, now);
        // The subscription's own headers as the API shows them: credential values masked, never in full.
        var headers = new Dictionary<string, string>(signed.Headers, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, shown) in SubscriptionHeaders.Masked(s.Headers, services.Sealer) ?? new Dictionary<string, string>()) headers[name] = shown;
        // No signature: the body of a preview is the caller's choice, and a signature over it would
        // let anyone who may preview sign whatever they like with the subscription's keys.
        foreach (var name in SignatureHeaders)
            if (headers.ContainsKey(name)) headers[name] = "(computed when sent)";
        return TypedResults.Ok(new PreviewResponse(eventType, matches, rendered.ContentType, Encoding.UTF8.GetString(rendered.Body), headers));
    }

    private static readonly string[] SignatureHeaders = ["X-Webhook-Signature", "webhook-signature"];

    /// <summary>Evaluates a filter as the fan-out does: PostgreSQL's <c>@@</c> over the payload.</summary>
    private static async Task<bool> MatchesAsync(NpgsqlDataSource database, byte[] payload, string filterPath, CancellationToken cancellationToken)
    {
        await using var cmd = database.CreateCommand("SELECT coalesce($1::text::jsonb @@ $2::text::jsonpath, false)");
        cmd.Parameters.Add(new() { Value = Encoding.UTF8.GetString(payload) });
        cmd.Parameters.Add(new() { Value = filterPath });
        return (bool)(await cmd.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// A PATCH that sets a batch while a template is stored, or a template while a batch is stored
    /// (and does not remove the other): refused with 400 naming <c>batch</c> or <c>template</c>. Null when fine.
    /// </summary>
    private static async Task<ValidationProblem?> BatchBesideTemplateAsync(Guid id, SubscriptionFields fields, ApiServices services,
        CancellationToken cancellationToken)
    {
        var setsBatch = fields.Batch is not null;
        var setsTemplate = fields.Shaping?.Template is not null;
        if (!setsBatch && !setsTemplate) return null;
        var stored = await services.Owned().Where(s => s.Id == id).Select(s => new { s.Template, s.BatchMaxEvents }).FirstOrDefaultAsync(cancellationToken);
        if (stored is null) return null; // the update answers 404
        var template = fields.Shaping is { HasTemplate: true } t ? t.Template : stored.Template;
        var batched = fields.HasBatch ? fields.Batch is not null : stored.BatchMaxEvents is not null;
        if (template is null || !batched) return null;
        return ApiInput.Invalid(setsBatch ? SubscriptionBatch.Field : "template", SubscriptionBatch.WithTemplateProblem);
    }

    /// <summary>The longest an API request waits for a turn to render (<see cref="TemplateRenderGate"/>): 5 s, within its database deadline.</summary>
    internal static readonly TimeSpan RenderWait = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A create or PATCH that sets a template: the template is tried on the examples of the request's
    /// event types, or on update without them the stored ones, in the caller's turn. Null when fine
    /// (or nothing to try); a 400 naming <c>template</c> when it fails; a 429 when no turn came.
    /// </summary>
    private static async Task<IResult?> TemplateCheckAsync(Guid? id, SubscriptionFields fields, ApiServices services, HttpResponse response,
        CancellationToken cancellationToken)
    {
        if (fields.Shaping?.Template is not { } json) return null;
        var types = fields.EventTypes ?? (id is { } stored
            ? await services.Owned().Where(s => s.Id == stored).Select(s => s.EventTypes).FirstOrDefaultAsync(cancellationToken)
            : null);
        if (types is null) return null; // the update answers 404
        var (problem, noTurn) = await ShapingFields.RenderErrorAsync(WebhookTemplate.FromJson(json), types, services.Delivery.Value.MaxEventBytes,
            services.Renders, services.UserId, RenderWait, cancellationToken);
        if (noTurn) return TooManyRenderings(response);
        return problem is null ? null : ApiInput.Invalid("template", problem);
    }
}
