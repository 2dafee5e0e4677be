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
    /// among them the backlog gauges of <see cref="DeliveryBacklogMetrics"/> and the partition gauge of
    /// <see cref="HistoryPartitionMetrics"/>, exported over OTLP
    /// when an endpoint is configured (<see cref="ExportConfigured"/>). Without one no
    /// OpenTelemetry SDK is started: nothing would read its spans or sums, which MassTransit,
    /// HttpClient and Npgsql would otherwise make for every message, query and POST (a few per
    /// cent of the dispatcher's CPU samples at 500 events/s; <c>docs/benchmarks/pipeline.md</c>).
    /// The meters still exist, so <c>dotnet-counters</c> can read them from a running process.
    /// </summary>
    public static IHostApplicationBuilder AddObservability(this IHostApplicationBuilder builder)
    {
        if (ExportConfigured(builder.Configuration))
        {
            // Sampling follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: every trace).
            builder.Services.AddOpenTelemetry()
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
                    .AddRuntimeInstrumentation())
                .UseOtlpExporter();
        }
        builder.Services.AddOptions<MonitoringOptions>().BindConfiguration(MonitoringOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.TryAddSingleton<MonitoringDatabase>();
        builder.Services.AddSingleton<DeliveryBacklogMetrics>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryBacklogMetrics>());
        builder.Services.AddSingleton<HistoryPartitionMetrics>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<HistoryPartitionMetrics>());
        return builder;
    }

    /// <summary>
    /// Whether OTLP export is configured: <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>, or the per-signal
    /// <c>OTEL_EXPORTER_OTLP_TRACES_ENDPOINT</c> or <c>OTEL_EXPORTER_OTLP_METRICS_ENDPOINT</c>, is
    /// set and <c>OTEL_SDK_DISABLED</c> is not <c>true</c> (OpenTelemetry environment variable specification).
    /// </summary>
    public static bool ExportConfigured(IConfiguration configuration) =>
        !string.Equals(configuration["OTEL_SDK_DISABLED"], "true", StringComparison.OrdinalIgnoreCase)
        && new[] { "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" }
            .Any(key => !string.IsNullOrWhiteSpace(configuration[key]));
}
