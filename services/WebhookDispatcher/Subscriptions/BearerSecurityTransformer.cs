using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace WebhookDispatcher.Subscriptions;

/// <summary>Declares the JWT bearer scheme in the OpenAPI document and requires it on every operation.</summary>
internal sealed class BearerSecurityTransformer : IOpenApiDocumentTransformer
{
    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes["Bearer"] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            BearerFormat = "JWT",
            Description = "A JWT whose sub claim is the user id; or a portal session token (wdps_…, from POST /portal/session), which stands for its user (or, for an operator session, reaches /api/operator only).",
        };
        document.Security ??= [];
        document.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("Bearer", document)] = [] });
        return Task.CompletedTask;
    }
}
