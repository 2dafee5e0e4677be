using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace WebhookDispatcher.Observability;

/// <summary>Settings of the health probes (section <c>Health</c>).</summary>
public sealed class HealthOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Health";

    /// <summary>
    /// Longest a database check may take, in seconds (1–4): the connect timeout, the command timeout
    /// and the check's own deadline. A database that accepts TCP but never answers (hung, or a
    /// black-holed network) then fails the probe within this time, not Npgsql's 15 s/30 s defaults,
    /// so <c>/health/ready</c> answers 503 within 5 s of losing PostgreSQL.
    /// </summary>
    [Range(1, 4)]
    public int TimeoutSeconds { get; set; } = 3;
}

/// <summary>
/// Health probes with the ASP.NET Core health-check libraries:
/// <c>/health/live</c> (the process serves requests; no dependency is checked, so a database or
/// broker outage never gets the process restarted) and <c>/health/ready</c> (PostgreSQL answers,
/// every EF Core migration is applied, RabbitMQ answers, and MassTransit's bus is started with its
/// endpoints running). Ready answers 200 when every check is healthy or degraded — a cluster
/// that lost a RabbitMQ node, or a PostgreSQL standby, still serves — else 503 (MassTransit's
/// <c>Degraded</c>, some endpoints not consuming, counts as not ready). Both carry a small JSON
/// body naming each check's status; the reasons go to the log only. <c>/health</c> stays as it
/// was (200 while the process serves) for scripts that wait on it.
/// </summary>
public static class HealthExtensions
{
    /// <summary>Tag of the checks <c>/health/ready</c> runs; MassTransit tags its bus check with it too.</summary>
    public const string ReadyTag = "ready";

    /// <summary>Name of the PostgreSQL check.</summary>
    public const string PostgresCheck = "postgres";

    /// <summary>Name of the migrations check.</summary>
    public const string MigrationsCheck = "migrations";

    /// <summary>Name of the broker check.</summary>
    public const string RabbitMqCheck = "rabbitmq";

    /// <summary>Name of MassTransit's bus check.</summary>
    public const string BusCheck = "masstransit-bus";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>
    /// Registers the checks: <c>postgres</c> (<see cref="DatabaseHealthCheck"/>, through <see cref="MonitoringDatabase"/>),
    /// <c>migrations</c> (<see cref="MigrationsHealthCheck"/>), <c>rabbitmq</c>
    /// (<see cref="BrokerHealthCheck"/>), and MassTransit's bus check, which
    /// MassTransit adds by itself once health checks are on (name <c>masstransit-bus</c>, tags
    /// <c>ready</c> and <c>masstransit</c>).
    /// </summary>
    public static IHostApplicationBuilder AddHealth(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<HealthOptions>().BindConfiguration(HealthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.TryAddSingleton<MonitoringDatabase>();
        builder.Services.AddSingleton<MigrationsHealthCheck>();
        builder.Services.AddSingleton<BrokerHealthCheck>();
        builder.Services.AddSingleton<DatabaseHealthCheck>();
        // MassTransit's Degraded (some receive endpoints not consuming) means this replica is not
        // doing its work: not ready. Degraded of our own checks means a cluster lost a member and
        // still serves: ready.
        builder.Services.PostConfigure<HealthCheckServiceOptions>(o =>
        {
            foreach (var registration in o.Registrations.Where(r => r.Name == BusCheck))
            {
                var factory = registration.Factory;
                registration.Factory = sp => new DegradedIsUnhealthy(factory(sp));
            }
        });
        var seconds = builder.Configuration.GetSection(HealthOptions.Section).Get<HealthOptions>()?.TimeoutSeconds ?? new HealthOptions().TimeoutSeconds;
        // Read here, before the options' own validation runs: its range is checked now.
        if (seconds is < 1 or > 4)
            throw new Security.StartupRefusedException($"Health:TimeoutSeconds must be from 1 to 4; it is {seconds}.");
        var timeout = TimeSpan.FromSeconds(seconds);
        builder.Services.AddHealthChecks()
            .AddCheck<DatabaseHealthCheck>(PostgresCheck, tags: [ReadyTag], timeout: timeout)
            .AddCheck<MigrationsHealthCheck>(MigrationsCheck, tags: [ReadyTag], timeout: timeout)
            .AddCheck<BrokerHealthCheck>(RabbitMqCheck, tags: [ReadyTag], timeout: timeout);
        return builder;
    }

    /// <summary>Maps <c>/health/live</c>, <c>/health/ready</c> and <c>/health</c> (anonymous, not in the OpenAPI document).</summary>
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains(ReadyTag),
            ResponseWriter = WriteAsync,
            // Degraded: a RabbitMQ node or a PostgreSQL standby is gone and the rest serves (the
            // bus check's own Degraded is turned into Unhealthy, see AddHealth).
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
        app.MapGet("/health", () => TypedResults.Ok(new { status = "ok" })).ExcludeFromDescription();
        return app;
    }

    /// <summary><c>{"status": "Unhealthy", "checks": {"postgres": "Unhealthy", "migrations": "Healthy", …}}</c>.</summary>
    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        var body = new
        {
            Status = report.Status.ToString(),
            Checks = report.Entries.ToDictionary(e => e.Key, e => e.Value.Status.ToString()),
        };
        return JsonSerializer.SerializeAsync(context.Response.Body, body, Json, context.RequestAborted);
    }
}

/// <summary>A health check whose <c>Degraded</c> counts as <c>Unhealthy</c> (MassTransit's bus check: some endpoints not consuming).</summary>
internal sealed class DegradedIsUnhealthy(IHealthCheck inner) : IHealthCheck
{
    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var result = await inner.CheckHealthAsync(context, cancellationToken);
        return result.Status == HealthStatus.Degraded
            ? new HealthCheckResult(HealthStatus.Unhealthy, result.Description, result.Exception, result.Data)
            : result;
    }
}
