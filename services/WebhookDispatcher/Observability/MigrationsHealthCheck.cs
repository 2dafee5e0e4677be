using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Observability;

/// <summary>
/// Healthy when the database has every EF Core migration this build carries: a replica whose code
/// expects columns that a pending migration would add is not ready for traffic. Reads the
/// migrations history through <see cref="MonitoringDatabase"/>, so it is as bounded in time as the
/// <c>postgres</c> check. A database with more migrations than this build knows (a newer
/// replica migrated it during a rolling deploy) is healthy.
/// </summary>
public sealed class MigrationsHealthCheck : IHealthCheck
{
    private readonly DbContextOptions<WebhookDbContext> _options;

    /// <summary>Creates the check on the health checks' own data source.</summary>
    public MigrationsHealthCheck(MonitoringDatabase database)
    {
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, database.DataSource);
        _options = options.Options;
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        await using var db = new WebhookDbContext(_options);
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        return pending.Count == 0
            ? HealthCheckResult.Healthy("Every migration is applied.")
            : new HealthCheckResult(context.Registration.FailureStatus,
                $"{pending.Count} migration(s) pending, first {pending[0]}: run the migrate command.");
    }
}
