using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Portal;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// Completes the generated OpenAPI document with what the handlers enforce but the types cannot
/// say: ranges, enums, formats and lengths of every field and query parameter, which fields a
/// request requires, and that unknown fields are refused. The numbers come from the same constants
/// the validation uses, so document and behaviour cannot drift apart.
/// </summary>
internal static partial class OpenApiDocumentation
{
    private static readonly string[] EventTypeNames = [.. EventCatalog.All.Select(t => t.Name)];
    private static readonly string[] Outcomes =
    [
        AttemptOutcome.Success, AttemptOutcome.HttpStatus, AttemptOutcome.Redirect, AttemptOutcome.Timeout,
        AttemptOutcome.ConnectionRefused, AttemptOutcome.DnsFailure, AttemptOutcome.TlsError, AttemptOutcome.ConnectionError,
        AttemptOutcome.BlockedAddress, AttemptOutcome.Lost, AttemptOutcome.TemplateError,
    ];

    /// <summary>The query and path parameters of the API, by name.</summary>
    private static readonly Dictionary<string, (string Description, Func<OpenApiSchema> Schema)> Parameters = new()
    {
        ["is_active"] = ("Only active (true) or inactive (false) subscriptions.", () => new OpenApiSchema { Type = JsonSchemaType.Boolean }),
        [IdempotencyKeys.Header] = ("Optional. The same request sent again with the same key within 24 hours answers with what the first one made " +
                                    "(a create: the subscription, 201, its secret as it is now; a rotation: the secret it made, while still the current one) " +
                                    "instead of doing it again; with another request, 422. A UUID per request is a good key. Sent more than once, 400.",
            () => new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = IdempotencyKeys.MaxLength, Pattern = "^[!-~]+$" }),
        ["include_attempts"] = ("Include each delivery's attempts, oldest first.",
            () => new OpenApiSchema { Type = JsonSchemaType.Boolean, Default = JsonValue.Create(false) }),
        ["event_type"] = ("Only subscriptions to this event type (on a delivery list: only deliveries of it).", () => Enum(new OpenApiSchema { Type = JsonSchemaType.String }, EventTypeNames)),
        ["status"] = ("Only deliveries in this status.", () => Enum(new OpenApiSchema { Type = JsonSchemaType.String }, DeliveryStatus.All)),
        ["limit"] = ("Page size.", () => Range(new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" }, 1, SubscriptionsApi.MaxLimit, SubscriptionsApi.DefaultLimit)),
        ["offset"] = ("Rows to skip (newest first). Not with cursor.",
            () => Range(new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" }, 0, int.MaxValue, 0)),
        ["cursor"] = ("The next_cursor of the previous page: rows after it, each row that existed when the walk started exactly once. Not with offset.",
            () => new OpenApiSchema { Type = JsonSchemaType.String, MaxLength = 64, Pattern = "^[A-Za-z0-9_-]+$" }),
        ["id"] = ("The webhook subscription's id.", () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" }),
        ["deliveryId"] = ("The delivery's id.", () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" }),
        ["name"] = ("An event type name.", () => Enum(new OpenApiSchema { Type = JsonSchemaType.String }, EventTypeNames)),
        ["window"] = ("How far back to count deliveries, by creation time: a whole number followed by m (minutes), h (hours) or d (days), from 1m to 30d.",
            () => new OpenApiSchema { Type = JsonSchemaType.String, Pattern = DeliveryStatsApi.WindowPattern, MaxLength = 7, Default = JsonValue.Create(DeliveryStatsApi.DefaultWindow) }),
        ["since"] = ("Only deliveries created at or after this time (RFC 3339 with its offset, e.g. 2026-12-01T00:00:00Z).",
            () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "date-time" }),
        ["until"] = ("Only deliveries created before this time (RFC 3339 with its offset).",
            () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "date-time" }),
        ["event_id"] = ("The event's id (the webhook-id header receivers saw).", () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" }),
        ["subscription_id"] = ("The subscription's id.", () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" }),
        ["delivery_id"] = ("The delivery's id (the X-Webhook-Delivery header receivers saw).", () => new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" }),
        ["user_id"] = ("The owner's user id (the sub of their tokens).",
            () => new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = AuthExtensions.MaxUserIdLength, Pattern = @"^\S(.*\S)?$" }),
        ["operator"] = ("Only the changes of this operator (the sub of their token).",
            () => new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = AuthExtensions.MaxUserIdLength, Pattern = @"^\S(.*\S)?$" }),
        ["host"] = ("The host of subscription URLs (and their port, if any), e.g. hooks.example.com.",
            () => new OpenApiSchema { Type = JsonSchemaType.String, MaxLength = 255, Pattern = @"^[A-Za-z0-9.\-\[\]:]{1,255}$" }),
        ["top"] = ("How many of the most-failing subscriptions to list.",
            () => Range(new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" }, 1, DeliveryStatsApi.MaxTop, DeliveryStatsApi.DefaultTop)),
    };

    /// <summary>Request bodies: the fields they require (the others are optional), and no unknown ones.</summary>
    private static readonly Dictionary<Type, string[]> RequestRequired = new()
    {
        [typeof(CreateSubscriptionRequest)] = ["url", "event_types"],
        [typeof(UpdateSubscriptionRequest)] = [],
        [typeof(RecoverRequest)] = ["since"],
        [typeof(PreviewRequest)] = [],
        [typeof(PortalSessionRequest)] = [],
        [typeof(OpenPortalSessionRequest)] = ["token"],
    };

    /// <summary>Registers the transformers on the OpenAPI document.</summary>
    public static void Configure(OpenApiOptions options)
    {
        options.AddDocumentTransformer<BearerSecurityTransformer>();
        options.AddDocumentTransformer((document, context, _) =>
        {
            var maxEventBytes = context.ApplicationServices.GetService<IOptions<DeliveryOptions>>()?.Value.MaxEventBytes ?? EventSizeLimit.DefaultMaxEventBytes;
            document.Info.Title = "Notely webhooks API";
            document.Info.Description = "Manage webhook subscriptions and read their delivery history. Receiver guide: docs/webhooks.md. " +
                $"A webhook body (the payload of an event type) is at most {maxEventBytes.ToString("N0", CultureInfo.InvariantCulture)} bytes of UTF-8 JSON " +
                "(Delivery:MaxEventBytes); larger events are never delivered.";
            // The document describes the API wherever it is served; a server URL taken from the
            // request that fetched it would be wrong behind a proxy.
            document.Servers =
            [
                new OpenApiServer
                {
                    Url = "{scheme}://{host}",
                    Description = "Wherever the dispatcher's API role is deployed.",
                    Variables = new Dictionary<string, OpenApiServerVariable>
                    {
                        ["scheme"] = new() { Default = "https", Enum = ["https", "http"] },
                        ["host"] = new() { Default = "localhost:5080", Description = "Host and port of the API." },
                    },
                },
            ];
            document.Tags = new HashSet<OpenApiTag> { new() { Name = "Webhooks", Description = "Webhook subscriptions, event types and deliveries." } };
            return Task.CompletedTask;
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            // Called for a type's schema whether it is met as a component or as a property's type.
            if (schema is not OpenApiSchema obj || obj.Properties is null
                || context.JsonTypeInfo.Type.Namespace is not ("WebhookDispatcher.Subscriptions" or "WebhookDispatcher.Portal")) return Task.CompletedTask;
            foreach (var (name, property) in obj.Properties)
                if (property is OpenApiSchema p && Properties.TryGetValue(name, out var apply))
                    apply(p);
            if (context.JsonTypeInfo.Type == typeof(SubscriptionBatch) && obj.Properties.TryGetValue("max_bytes", out var maxBytes)
                && maxBytes is OpenApiSchema batchBytes)
            {
                // Not the filter limits' max_bytes: a batch's is from 1,024 to the payload cap (SubscriptionBatch.Read).
                var cap = context.ApplicationServices.GetService<IOptions<DeliveryOptions>>()?.Value.MaxEventBytes ?? EventSizeLimit.DefaultMaxEventBytes;
                Range(batchBytes, BatchLimits.MinMaxBytes, cap, cap);
                batchBytes.Description = "Largest batch body in bytes of UTF-8, from 1024 to the event payload cap (its default): a batch closes " +
                    "before an event that would take its body past it. An event that alone is larger goes in a batch of its own, whose body is " +
                    $"that event plus the {BatchBody.EnvelopeBytes}-byte envelope, so larger than max_bytes (and, for an event at the payload cap, than the cap).";
            }
            if (RequestRequired.TryGetValue(context.JsonTypeInfo.Type, out var required))
            {
                obj.Required = new HashSet<string>(required);
                obj.AdditionalPropertiesAllowed = false;
            }
            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            // Read by the handlers with its lines (IdempotencyKeys.Read), so no parameter of theirs declares it.
            if (operation.OperationId is "CreateWebhook" or "RotateWebhookSecret")
                (operation.Parameters ??= []).Add(new OpenApiParameter { Name = IdempotencyKeys.Header, In = ParameterLocation.Header });
            foreach (var parameter in operation.Parameters ?? [])
            {
                if (parameter is not OpenApiParameter p || p.Name is null || !Parameters.TryGetValue(p.Name, out var known)) continue;
                p.Description = known.Description;
                p.Schema = known.Schema();
                // A delivery list also filters on batch deliveries (event_type batch).
                if (operation.OperationId == "ListDeliveries" && p.Name == "event_type")
                {
                    p.Description = "Only deliveries of this event type; batch: only batch deliveries.";
                    Enum((OpenApiSchema)p.Schema, [.. EventTypeNames, BatchBody.EventType]);
                }
            }
            if (operation.Responses?.TryGetValue("429", out var tooMany) == true && tooMany is OpenApiResponse limited)
            {
                limited.Description = "Too many requests: past a per-user rate limit, or (where a template renders) no turn to render within 5 s. Retry after the Retry-After header's seconds.";
                limited.Headers = new Dictionary<string, IOpenApiHeader>
                {
                    ["Retry-After"] = new OpenApiHeader
                    {
                        Description = "Seconds until the next request is allowed (RFC 9110 §10.2.3).",
                        Required = true,
                        Schema = Range(new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" }, 1, 60),
                    },
                };
            }
            if (operation.OperationId == "CreateWebhook") DescribeCreateLimits(operation, context.ApplicationServices);
            // Opening a portal link is how a browser without credentials gets a session.
            if (operation.OperationId == "OpenPortalSession") operation.Security = [];
            return Task.CompletedTask;
        });
    }

    /// <summary>The 409 and 429 of <c>POST /api/webhooks</c>, with the limits this deployment is configured with.</summary>
    private static void DescribeCreateLimits(OpenApiOperation operation, IServiceProvider services)
    {
        var limits = services.GetRequiredService<IOptions<SubscriptionOptions>>().Value;
        if (operation.Responses?.TryGetValue("409", out var conflict) == true && conflict is OpenApiResponse atLimit)
            atLimit.Description = $"The caller has {limits.MaxPerUser} subscriptions (deleted ones do not count), the most a user may have. "
                + "Nothing was created; the problem details carry limit and current.";
        if (operation.Responses?.TryGetValue("429", out var tooMany) == true && tooMany is OpenApiResponse rate)
            rate.Description = $"The caller created {limits.CreatesPerMinute} subscriptions in the last {SubscriptionLimits.WindowSeconds} seconds "
                + "(deleted ones included), the most a user may. Nothing was created; retry after the Retry-After header's seconds, "
                + "when the oldest of them leaves the window. The problem details carry limit, current and retry_after_seconds.";
    }

    private static OpenApiSchema Range(OpenApiSchema schema, long minimum, long? maximum, long? fallback = null)
    {
        schema.Minimum = minimum.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (maximum is { } max) schema.Maximum = max.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (fallback is { } value) schema.Default = JsonValue.Create(value);
        return schema;
    }

    private static OpenApiSchema Enum(OpenApiSchema schema, IEnumerable<string> values)
    {
        schema.Enum = [.. values.Select(v => (JsonNode)JsonValue.Create(v))];
        return schema;
    }
}
