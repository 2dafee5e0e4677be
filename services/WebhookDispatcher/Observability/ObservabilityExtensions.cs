using MassTransit.Logging;
using MassTransit.Monitoring;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace WebhookDispatcher.Observability;

/// <summary>OpenTelemetry tracing and metrics; exported over OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.</summary>
public static class ObservabilityExtensions
{
    /// <summary>
    /// Adds traces (ASP.NET Core, HttpClient, Npgsql, MassTransit, the dispatcher) and metrics,
    /// among them the backlog gauges of <see cref="DeliveryBacklogMetrics"/>.
    /// </summary>
    public static IHostApplicationBuilder AddObservability(this IHostApplicationBuilder builder)
    {
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(WebhookTelemetry.Name))
            .WithTracing(t => t
                .AddSource(WebhookTelemetry.Name, DiagnosticHeaders.DefaultListenerName)
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddNpgsql())
            .WithMetrics(m => m
                .AddMeter(WebhookTelemetry.Name, InstrumentationOptions.MeterName)
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation());
        builder.Services.AddOptions<MonitoringOptions>().BindConfiguration(MonitoringOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.TryAddSingleton<MonitoringDatabase>();
        builder.Services.AddSingleton<DeliveryBacklogMetrics>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryBacklogMetrics>());
        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
            otel.UseOtlpExporter();
        return builder;
    }
}
