using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql.EntityFrameworkCore.PostgreSQL;
using Microsoft.EntityFrameworkCore.Design;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>Settings of the database (section <c>Database</c>).</summary>
public sealed class DatabaseOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Database";

    /// <summary>Apply pending migrations when the service starts (development). In production run the <c>migrate</c> command instead.</summary>
    public bool MigrateOnStartup { get; set; }

    /// <summary>
    /// Seconds an API request that uses the database may take before it is answered 503 with
    /// <c>Retry-After</c> (Subscriptions/DatabaseDeadline.cs): a database that hangs refuses
    /// nothing. 1–300, default 10.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 300)]
    public int ApiRequestTimeoutSeconds { get; set; } = 10;
}

/// <summary>Registers PostgreSQL: one <see cref="NpgsqlDataSource"/> (one pool) shared by EF Core and the delivery store.</summary>
public static class DataExtensions
{
    /// <summary>Seconds to wait for a new connection's startup answer (Npgsql <c>Timeout</c>) unless the connection string gives its own: 5.</summary>
    public const int ConnectTimeoutSeconds = 5;

    /// <summary>
    /// Adds the data source (connection string <c>Postgres</c>; several hosts for a primary and its
    /// standbys, see <see cref="PostgresHosts"/>), <see cref="WebhookDbContext"/>,
    /// if configured, migration at start-up, and when <see cref="Messaging.DispatcherOptions.Workers"/>
    /// is on, the <see cref="PartitionMaintenance"/> that makes the history's day partitions ahead.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection string is missing.</exception>
    public static IHostApplicationBuilder AddData(this IHostApplicationBuilder builder)
    {
        var connectionString = builder.Configuration.GetConnectionString("Postgres")
                               ?? throw new InvalidOperationException("ConnectionStrings:Postgres is not set.");
        builder.Services.AddSingleton(_ =>
        {
            var dataSource = new NpgsqlDataSourceBuilder(connectionString);
            // Several hosts: always the primary, and a promoted standby found within a second.
            PostgresHosts.ApplyFailoverDefaults(dataSource.ConnectionStringBuilder, connectionString);
            // The delivery path runs a handful of statements thousands of times a second: prepare
            // them on each connection after their second use (planning costs about 0.4 ms each),
            // unless the connection string says otherwise.
            if (dataSource.ConnectionStringBuilder.MaxAutoPrepare == 0)
            {
                dataSource.ConnectionStringBuilder.MaxAutoPrepare = 64;
                dataSource.ConnectionStringBuilder.AutoPrepareMinUsages = 2;
            }
            // A database host that hangs accepts the TCP connection and then answers nothing; Npgsql
            // waits for its startup answer for Timeout (15 s by default) whatever the caller's
            // cancellation. 5 s is ample for a database that answers at all, and keeps an API
            // request's answer near its deadline (Subscriptions/DatabaseDeadline.cs). Kept when given.
            if (!PostgresHosts.GivenKeys(connectionString).Contains("timeout"))
                dataSource.ConnectionStringBuilder.Timeout = ConnectTimeoutSeconds;
            // The service keeps no session state on its connections (no SET, temp tables or
            // advisory locks), so returning one to the pool need not cost a reset round trip.
            dataSource.ConnectionStringBuilder.NoResetOnClose = true;
            // Plan each execution for the table as it is now. A prepared statement's generic plan
            // is made once, from the statistics of that moment: made while the deliveries table
            // was still small, it kept scanning a whole index for every claim of 500 ids once the
            // table had grown (10 ms a claim instead of 0.4 ms). Statements here are set-based,
            // so planning costs microseconds per row; parsing is still saved by preparing.
            if (string.IsNullOrEmpty(dataSource.ConnectionStringBuilder.Options))
                dataSource.ConnectionStringBuilder.Options = "-c plan_cache_mode=force_custom_plan";
            return dataSource.Build();
        });
        builder.Services.AddDbContextPool<WebhookDbContext>((sp, options) => Configure(options, sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // Registered before the bus, so consumers never start on a schema that is not there yet.
        builder.Services.AddHostedService<MigrateOnStartup>();
        if (Messaging.DispatcherOptions.WorkersEnabled(builder.Configuration))
        {
            // After the migrations, so its first pass finds the tables.
            builder.Services.AddOptions<PartitionOptions>().BindConfiguration(PartitionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
            builder.Services.AddSingleton<PartitionMaintenance>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<PartitionMaintenance>());
        }
        return builder;
    }

    /// <summary>Applies pending migrations and returns (the <c>migrate</c> command).</summary>
    public static async Task MigrateDatabaseAsync(this IServiceProvider services, CancellationToken cancellationToken = default)
    {
        await using var scope = services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<WebhookDbContext>().Database.MigrateAsync(cancellationToken);
    }

    /// <remarks>
    /// A statement that fails on a broken connection clears the pool (<see cref="BrokenConnections"/>)
    /// and is retried once, at once, on a fresh connection (EF Core's execution strategy; besides
    /// Npgsql's transient errors it retries the shutdown and connection SQL states of
    /// <see cref="DatabaseAvailability.TransientSqlStates"/>), so the first request after a database
    /// restart succeeds instead of failing once per pooled connection. Only once: a database that
    /// is still away is answered 503 at once rather than after seconds of waiting; never after a
    /// timeout (a database that hangs). Transactions the
    /// code begins itself must run inside <c>Database.CreateExecutionStrategy().ExecuteAsync</c>.
    /// </remarks>
    internal static DbContextOptionsBuilder Configure(DbContextOptionsBuilder options, NpgsqlDataSource dataSource) =>
        options.UseNpgsql(dataSource, npgsql => npgsql.ExecutionStrategy(dependencies => new RetryBrokenOnce(dependencies)))
            .AddInterceptors(new BrokenConnections.Interceptor(dataSource))
            .UseSnakeCaseNamingConvention();

    /// <summary>
    /// EF Core's Npgsql retry, once, after 1 s, also for <see cref="DatabaseAvailability.TransientSqlStates"/>;
    /// but not after a timeout: a database that does not answer (it hangs) would only make the
    /// caller wait as long again before the same 503.
    /// </summary>
    private sealed class RetryBrokenOnce(ExecutionStrategyDependencies dependencies)
        : NpgsqlRetryingExecutionStrategy(dependencies, 1, TimeSpan.FromSeconds(1), [.. DatabaseAvailability.TransientSqlStates])
    {
        protected override bool ShouldRetryOn(Exception? exception) =>
            exception is not (TimeoutException or NpgsqlException { InnerException: TimeoutException }) && base.ShouldRetryOn(exception);
    }

    private sealed class MigrateOnStartup(IServiceProvider services, Microsoft.Extensions.Options.IOptions<DatabaseOptions> options) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            options.Value.MigrateOnStartup ? services.MigrateDatabaseAsync(cancellationToken) : Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}

/// <summary>Timestamps as PostgreSQL stores them.</summary>
public static class TimestampExtensions
{
    /// <summary>
    /// <paramref name="time"/> cut to whole microseconds, the precision of <c>timestamptz</c>, so a
    /// value answered right after a write equals the one read back later.
    /// </summary>
    public static DateTimeOffset ToDatabasePrecision(this DateTimeOffset time) => time.AddTicks(-(time.Ticks % 10));
}

/// <summary>Lets <c>dotnet ef</c> build the model without starting the host.</summary>
internal sealed class DesignTimeDbContextFactory : IDesignTimeDbContextFactory<WebhookDbContext>
{
    public WebhookDbContext CreateDbContext(string[] args)
    {
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, NpgsqlDataSource.Create("Host=localhost;Database=webhooks"));
        return new WebhookDbContext(options.Options);
    }
}
