using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Observability;

/// <summary>
/// The PostgreSQL data source of health probes and metric samples: the service's connection
/// string with short timeouts (<see cref="HealthOptions.TimeoutSeconds"/>) and no pooling. Not
/// pooled so that each probe opens a fresh connection, which is what "reachable" means, and never
/// reports a pooled connection that the server closed while it was down; separate so that a busy
/// delivery pool (every connection in use) does not make the service look unready, and a hung
/// server holds a probe or a metrics export for seconds, not Npgsql's 15 s/30 s defaults.
/// </summary>
public sealed class MonitoringDatabase : IAsyncDisposable
{
    /// <summary>Builds the data source from <c>ConnectionStrings:Postgres</c>.</summary>
    public MonitoringDatabase(IConfiguration configuration, IOptions<HealthOptions> options)
    {
        var connectionString = configuration.GetConnectionString("Postgres");
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        Hosts = connectionString is null ? [] : Data.PostgresHosts.Of(connectionString);
        if (connectionString is not null)
        {
            Data.PostgresHosts.ApplyFailoverDefaults(builder.ConnectionStringBuilder, connectionString);
            // Opening a connection negotiates as a cancel request does (DataExtensions.DisableGssEncryptionUnlessGiven).
            Data.DataExtensions.DisableGssEncryptionUnlessGiven(builder.ConnectionStringBuilder, Data.PostgresHosts.GivenKeys(connectionString));
        }
        var seconds = options.Value.TimeoutSeconds;
        builder.ConnectionStringBuilder.Pooling = false;
        builder.ConnectionStringBuilder.Timeout = seconds;
        builder.ConnectionStringBuilder.CommandTimeout = seconds;
        // After a command timeout Npgsql asks the server to cancel and waits this long (ms) for
        // the answer before it breaks the connection; a hung server would otherwise hold the check.
        builder.ConnectionStringBuilder.CancellationTimeout = 500;
        builder.ConnectionStringBuilder.ApplicationName = "webhook-dispatcher-health";
        _settings = builder.ConnectionString;
        DataSource = builder.Build();
    }

    private readonly string _settings;

    /// <summary>The hosts of the connection string, as given (<c>host</c> or <c>host:port</c>).</summary>
    public IReadOnlyList<string> Hosts { get; }

    /// <summary>A new, unopened and unpooled connection to <paramref name="host"/> alone (one of <see cref="Hosts"/>), whatever its role.</summary>
    public NpgsqlConnection OpenHost(string host) => new(new NpgsqlConnectionStringBuilder(_settings)
    {
        Host = host,
        TargetSessionAttributes = "any",
    }.ConnectionString);

    /// <summary>The unpooled, short-timeout data source.</summary>
    public NpgsqlDataSource DataSource { get; }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
