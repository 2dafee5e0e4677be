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
    /// <exception cref="Security.StartupRefusedException">The connection string is missing, or Npgsql cannot read it, or it names no host, or its pool holds no connection.</exception>
    public static IHostApplicationBuilder AddData(this IHostApplicationBuilder builder)
    {
        var connectionString = builder.Configuration.GetConnectionString("Postgres") is { Length: > 0 } given
            ? given
            : throw new Security.StartupRefusedException("ConnectionStrings:Postgres is not set (e.g. Host=127.0.0.1;Port=5432;Database=webhooks;Username=webhooks;Password=…).");
        // Read once here, so that a malformed value stops the start with its reason (Program) rather
        // than wherever a data source happens to be built first.
        try
        {
            var read = new NpgsqlConnectionStringBuilder(connectionString);
            if (string.IsNullOrWhiteSpace(read.Host))
                throw new Security.StartupRefusedException("ConnectionStrings:Postgres names no Host.");
            if (read.Port is < 1 or > 65535)
                throw new Security.StartupRefusedException($"ConnectionStrings:Postgres: Port must be from 1 to 65535; it is {read.Port}.");
            // Npgsql takes 0 and then waits for a connection the pool can never give (every
            // request 503 after the connect timeout); a minimum above the maximum it refuses itself.
            if (read.Pooling && read.MaxPoolSize < 1)
                throw new Security.StartupRefusedException(
                    $"ConnectionStrings:Postgres: Maximum Pool Size must be at least 1 (or Pooling=false); it is {read.MaxPoolSize}.");
        }
        catch (ArgumentException ex)
        {
            throw new Security.StartupRefusedException($"ConnectionStrings:Postgres cannot be read: {ex.Message}");
        }
        builder.Services.AddSingleton(_ =>
        {
            var dataSource = new NpgsqlDataSourceBuilder(connectionString);
            ApplyDefaults(dataSource.ConnectionStringBuilder, connectionString);
            return dataSource.Build();
        });
        builder.Services.AddDbContextPool<WebhookDbContext>((sp, options) =>
        {
            var dataSource = sp.GetRequiredService<NpgsqlDataSource>();
            Configure(options, dataSource,
                ApiCommandTimeoutSeconds(sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<DatabaseOptions>>().Value, dataSource));
        });
        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // Registered before the bus, so consumers never start on a schema that is not there yet.
        var workers = Messaging.DispatcherOptions.WorkersEnabled(builder.Configuration);
        builder.Services.AddHostedService(sp => new MigrateOnStartup(sp, sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<DatabaseOptions>>(),
            workers, sp.GetRequiredService<ILoggerFactory>().CreateLogger<MigrateOnStartup>()));
        if (workers)
        {
            // After the migrations, so its first pass finds the tables.
            builder.Services.AddOptions<PartitionOptions>().BindConfiguration(PartitionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
            builder.Services.AddSingleton<PartitionMaintenance>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<PartitionMaintenance>());
        }
        return builder;
    }

    /// <summary>
    /// The service's defaults for a connection string, each kept where the string gives its own:
    /// the failover defaults of <see cref="PostgresHosts"/>, automatic preparation, a 5 s connect
    /// timeout, GSS encryption off and custom plans; and, whatever the string says, no reset on
    /// return to the pool.
    /// </summary>
    /// <param name="builder">The builder to change.</param>
    /// <param name="connectionString">The connection string as configured (to tell a value given from a default).</param>
    public static void ApplyDefaults(NpgsqlConnectionStringBuilder builder, string connectionString)
    {
        // Several hosts: always the primary, and a promoted standby found within a second.
        PostgresHosts.ApplyFailoverDefaults(builder, connectionString);
        // The delivery path runs a handful of statements thousands of times a second: prepare
        // them on each connection after their second use, unless the connection string says
        // otherwise (decision 0004; the cost of planning in docs/benchmarks/pipeline.md).
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }
        // A database host that hangs accepts the TCP connection and then answers nothing; Npgsql
        // waits for its startup answer for Timeout (15 s by default) whatever the caller's
        // cancellation. 5 s is ample for a database that answers at all, and keeps an API
        // request's answer near its deadline (Subscriptions/DatabaseDeadline.cs). Kept when given.
        var given = PostgresHosts.GivenKeys(connectionString);
        if (!given.Contains("timeout"))
            builder.Timeout = ConnectTimeoutSeconds;
        DisableGssEncryptionUnlessGiven(builder, given);
        // The service keeps no session state on its connections (no SET, temp tables or
        // advisory locks past a statement; HistoryRetention resets its lock_timeout and
        // releases its advisory lock before it returns its connection), so returning one to
        // the pool need not cost a reset round trip.
        builder.NoResetOnClose = true;
        // Plan each execution for the table as it is now (decision 0004). A prepared statement's
        // generic plan is made once, from the statistics of that moment: made while the
        // deliveries table was still small, it kept scanning a whole index for every claim once
        // the table had grown. Statements here are set-based, so planning is paid per statement,
        // not per row; parsing is still saved by preparing.
        if (string.IsNullOrEmpty(builder.Options))
            builder.Options = "-c plan_cache_mode=force_custom_plan";
    }

    /// <summary>
    /// Turns GSS encryption off unless the connection string (<paramref name="givenKeys"/>, lower
    /// case, from <see cref="PostgresHosts.GivenKeys"/>) or <c>PGGSSENCMODE</c> sets it. With
    /// Npgsql's default ("prefer") every new connection, and every cancel request, which opens
    /// one, tries twice, so a hung server holds each of them for twice the connect timeout
    /// (docs/benchmarks/api.md, "A frozen database"). Kerberos deployments that want GSS
    /// encryption say so.
    /// </summary>
    public static void DisableGssEncryptionUnlessGiven(NpgsqlConnectionStringBuilder builder, IReadOnlySet<string> givenKeys)
    {
        if (!givenKeys.Contains("gssencryptionmode") && Environment.GetEnvironmentVariable("PGGSSENCMODE") is null)
            builder.GssEncryptionMode = GssEncryptionMode.Disable;
    }

    /// <summary>
    /// The command timeout of the API's statements (EF Core serves the API and the readiness probe
    /// alone; migrations set their own), in seconds: the deadline
    /// (<see cref="DatabaseOptions.ApiRequestTimeoutSeconds"/>) plus the connect timeout plus 1.
    /// The first statement of a transaction needs one: Npgsql sends <c>BEGIN</c> in front of it
    /// and honours no cancellation until that is answered (npgsql/npgsql#5191), so against a
    /// database that hangs only a command timeout ends it. Past the deadline and the cancel
    /// request that follows it (which waits up to the connect timeout) because a timeout at the
    /// deadline itself broke the statement's connection on a pool thread, which then waited for
    /// that cancel request's lock.
    /// </summary>
    public static int ApiCommandTimeoutSeconds(DatabaseOptions options, NpgsqlDataSource dataSource) =>
        options.ApiRequestTimeoutSeconds + new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).Timeout + 1;

    /// <summary>The Npgsql connection and transaction under <paramref name="db"/>'s open transaction, for raw SQL that must run inside it.</summary>
    /// <exception cref="InvalidOperationException">No transaction is open on <paramref name="db"/> (<paramref name="what"/> says what needed one).</exception>
    internal static (NpgsqlConnection Connection, NpgsqlTransaction Transaction) OpenTransaction(this WebhookDbContext db, string what) =>
        ((NpgsqlConnection)db.Database.GetDbConnection(),
         db.Database.CurrentTransaction?.GetDbTransaction() as NpgsqlTransaction
         ?? throw new InvalidOperationException($"{what} inside a transaction of the context."));

    /// <summary>A migration statement's command timeout: 10 minutes.</summary>
    public static readonly TimeSpan MigrationCommandTimeout = TimeSpan.FromMinutes(10);

    /// <summary>Applies pending migrations and returns (the <c>migrate</c> command).</summary>
    public static async Task MigrateDatabaseAsync(this IServiceProvider services, CancellationToken cancellationToken = default)
    {
        await using var scope = services.CreateAsyncScope();
        var database = scope.ServiceProvider.GetRequiredService<WebhookDbContext>().Database;
        // Not the API's deadline: a migration's statement may run for minutes on a large table.
        database.SetCommandTimeout(MigrationCommandTimeout);
        // EF's own history table first: on a new database the migrator's first read of it would
        // fail, and EF logs that failure as an error ("fail: … Failed executing DbCommand") although
        // the migration then goes on and succeeds.
        // (A database that does not exist yet is created by MigrateAsync, which then knows the table is missing.)
        if (await Microsoft.EntityFrameworkCore.Infrastructure.AccessorExtensions
                .GetService<Microsoft.EntityFrameworkCore.Storage.IRelationalDatabaseCreator>(database).ExistsAsync(cancellationToken))
            await Microsoft.EntityFrameworkCore.Infrastructure.AccessorExtensions
                .GetService<Microsoft.EntityFrameworkCore.Migrations.IHistoryRepository>(database).CreateIfNotExistsAsync(cancellationToken);
        await database.MigrateAsync(cancellationToken);
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
    /// <param name="options">The context's options.</param>
    /// <param name="dataSource">The service's data source.</param>
    /// <param name="commandTimeoutSeconds">Every statement's command timeout, in seconds; null for the data source's (30 s unless the connection string says otherwise).</param>
    internal static DbContextOptionsBuilder Configure(DbContextOptionsBuilder options, NpgsqlDataSource dataSource, int? commandTimeoutSeconds = null) =>
        options.UseNpgsql(dataSource, npgsql => npgsql.ExecutionStrategy(dependencies => new RetryBrokenOnce(dependencies)).CommandTimeout(commandTimeoutSeconds))
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

    /// <summary>
    /// At start: applies the migrations when <see cref="DatabaseOptions.MigrateOnStartup"/>; otherwise
    /// a process with workers refuses to start while the database it reaches lacks migrations (its
    /// consumers would take events and fail on every one, sending them back through the broker,
    /// while its readiness says <c>migrations</c> Unhealthy). A database that cannot be reached now
    /// does not stop the start: the workers ride out outages.
    /// </summary>
    private sealed class MigrateOnStartup(IServiceProvider services, Microsoft.Extensions.Options.IOptions<DatabaseOptions> options, bool workers,
        ILogger<MigrateOnStartup> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            if (options.Value.MigrateOnStartup)
            {
                await services.MigrateDatabaseAsync(cancellationToken);
                return;
            }
            if (!workers) return;
            List<string> pending;
            try
            {
                await using var scope = services.CreateAsyncScope();
                pending = [.. await scope.ServiceProvider.GetRequiredService<WebhookDbContext>().Database.GetPendingMigrationsAsync(cancellationToken)];
            }
            catch (Exception ex) when (ex.GetBaseException() is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
            {
                logger.LogWarning("Could not check the database's migrations at start ({Reason}); starting anyway", ex.GetBaseException().Message);
                return;
            }
            if (pending.Count > 0)
                throw new Security.StartupRefusedException(
                    $"the database lacks {pending.Count} migration(s) this version needs (the latest: {pending[^1]}); run `WebhookDispatcher migrate` " +
                    "before starting workers (docs/operations.md, \"Release steps\").");
        }

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
