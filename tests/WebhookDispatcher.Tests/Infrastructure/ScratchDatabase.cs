using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Npgsql;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// A database of one test's own on the run's PostgreSQL server, for numbers that must not see
/// the other tests' rows (service-wide gauges) or a schema in a state of the test's choosing
/// (migrations not applied). Named after the run's database, so deploy/test.sh removes what a
/// killed run leaves; dropped on dispose.
/// </summary>
public sealed class ScratchDatabase : IAsyncDisposable
{
    private readonly string _name;

    private ScratchDatabase(string name, string connectionString)
    {
        _name = name;
        ConnectionString = connectionString;
    }

    /// <summary>Its connection string.</summary>
    public string ConnectionString { get; }

    /// <summary>Creates an empty database; with <paramref name="migrate"/>, applies every migration.</summary>
    public static async Task<ScratchDatabase> CreateAsync(string purpose, bool migrate)
    {
        var run = new NpgsqlConnectionStringBuilder(TestInfrastructure.Postgres);
        var name = $"{run.Database}_{purpose}_{Guid.NewGuid().ToString("N")[..8]}".ToLowerInvariant();
        await ExecuteAsync($"CREATE DATABASE \"{name}\"");
        var database = new ScratchDatabase(name, new NpgsqlConnectionStringBuilder(TestInfrastructure.Postgres) { Database = name }.ConnectionString);
        if (migrate) await database.MigrateAsync();
        return database;
    }

    /// <summary>
    /// Applies every migration, as the <c>migrate</c> command does; with <paramref name="target"/>
    /// (a migration's id, e.g. <c>20261207150000_PortalLinkRate</c>), those up to it: the database
    /// of an older version.
    /// </summary>
    public async Task MigrateAsync(string? target = null)
    {
        await using var dataSource = NpgsqlDataSource.Create(ConnectionString);
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        DataExtensions.Configure(options, dataSource);
        await using var db = new WebhookDbContext(options.Options);
        await db.GetService<Microsoft.EntityFrameworkCore.Migrations.IMigrator>().MigrateAsync(target);
    }

    /// <summary>Runs one statement in this database.</summary>
    public async Task ExecuteInAsync(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Drops the database, closing whatever connections remain.</summary>
    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await ExecuteAsync($"DROP DATABASE IF EXISTS \"{_name}\" WITH (FORCE)");
    }

    private static async Task ExecuteAsync(string sql)
    {
        // Pooling off: a pooled connection to the run's database would outlive this statement for nothing.
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(TestInfrastructure.Postgres) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
