using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace WebhookDispatcher.Observability;

/// <summary>
/// Whether PostgreSQL can take the service's writes, host by host when
/// <c>ConnectionStrings:Postgres</c> lists several (a primary and its standbys): each host is asked
/// <c>SELECT pg_is_in_recovery()</c> over a fresh, unpooled connection of <see cref="MonitoringDatabase"/>'s
/// settings. <c>Healthy</c> when a primary answers and so does every other host; <c>Degraded</c>
/// when a primary answers but some host does not (a standby lost: the service still works, but a
/// failover has nowhere to go); <c>Unhealthy</c> when no primary answers — its description says
/// whether a standby answers (promote it) or nothing does. With one host, <c>SELECT 1</c>: Healthy
/// or Unhealthy. Each host's connect and command time out after <see cref="HealthOptions.TimeoutSeconds"/>.
/// </summary>
public sealed class DatabaseHealthCheck(MonitoringDatabase database) : IHealthCheck
{
    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (database.Hosts.Count == 1)
        {
            await using var command = database.DataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(cancellationToken);
            return HealthCheckResult.Healthy();
        }
        var answers = await Task.WhenAll(database.Hosts.Select(h => AskAsync(h, cancellationToken)));
        var primaries = answers.Where(a => a.Primary == true).Select(a => a.Host).ToList();
        var silent = answers.Where(a => a.Primary is null).ToList();
        var reasons = string.Join("; ", silent.Select(a => $"{a.Host}: {a.Error!.Message}"));
        if (primaries.Count == 0)
        {
            var standbys = answers.Where(a => a.Primary == false).Select(a => a.Host).ToList();
            return HealthCheckResult.Unhealthy(standbys.Count > 0
                ? $"No PostgreSQL primary answers; standby {string.Join(", ", standbys)} does (promote it){(reasons.Length > 0 ? $" ({reasons})" : "")}"
                : $"No PostgreSQL host answers ({reasons})", silent.FirstOrDefault().Error);
        }
        if (primaries.Count > 1)
            return HealthCheckResult.Unhealthy($"Several PostgreSQL hosts answer as primary ({string.Join(", ", primaries)}): stop the old one");
        return silent.Count == 0
            ? HealthCheckResult.Healthy()
            : HealthCheckResult.Degraded($"PostgreSQL primary {primaries[0]} answers; {silent.Count} other host(s) do not ({reasons})");
    }

    private async Task<(string Host, bool? Primary, Exception? Error)> AskAsync(string host, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = database.OpenHost(host);
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand("SELECT pg_is_in_recovery()", connection);
            return (host, await command.ExecuteScalarAsync(cancellationToken) is false, null);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return (host, null, ex);
        }
    }
}
