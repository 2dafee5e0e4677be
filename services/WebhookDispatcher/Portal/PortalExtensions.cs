namespace WebhookDispatcher.Portal;

/// <summary>Registration of the delivery portal: its settings, session store, pages and APIs.</summary>
public static class PortalExtensions
{
    /// <summary>
    /// Adds the portal's settings (<c>Portal:FrameAncestors</c> as one value or as a list) and
    /// session store (its authentication scheme is added by <c>AddAuth</c>).
    /// </summary>
    public static IHostApplicationBuilder AddPortal(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<PortalOptions>().BindConfiguration(PortalOptions.Section)
            .Configure<IConfiguration>((o, configuration) => o.FrameAncestors =
                PortalOptions.ListedFrameAncestors(configuration.GetSection($"{PortalOptions.Section}:{nameof(PortalOptions.FrameAncestors)}")) ?? o.FrameAncestors)
            .ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<PortalSessionStore>();
        builder.Services.AddSingleton<OperatorAuditTrail>();
        return builder;
    }

    /// <summary>Maps the page, the session endpoints and the operator API.</summary>
    public static IEndpointRouteBuilder MapPortal(this IEndpointRouteBuilder app)
    {
        app.MapPortalPages();
        app.MapPortalSessions();
        app.MapOperatorApi();
        return app;
    }
}
