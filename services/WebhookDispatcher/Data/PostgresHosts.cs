using System.Data.Common;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>
/// <c>ConnectionStrings:Postgres</c> with several hosts (a primary and its standbys,
/// <c>Host=db1:5432,db2:5432</c>): Npgsql tries them in order and, with
/// <c>Target Session Attributes=primary</c>, only ever uses the one that takes writes, so after a
/// standby is promoted the service writes to it without a restart. Where such a connection
/// string leaves them out, the service sets <c>Target Session Attributes=primary</c> (every
/// statement here writes, or must read its own writes) and <c>Host Recheck Seconds=1</c> (how
/// long Npgsql trusts what it learned of a host: its default of 10 kept a promoted standby
/// unused for up to 10 s). A value the connection string gives is kept.
/// </summary>
public static class PostgresHosts
{
    /// <summary>The <c>Host Recheck Seconds</c> set when several hosts are given and the connection string names none.</summary>
    public const int DefaultHostRecheckSeconds = 1;

    /// <summary>The hosts of <paramref name="connectionString"/> as given (<c>host</c> or <c>host:port</c>), one or more.</summary>
    public static IReadOnlyList<string> Of(string connectionString) =>
        [.. (new NpgsqlConnectionStringBuilder(connectionString).Host ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];

    /// <summary>The keys <paramref name="connectionString"/> gives, lower case without spaces (<c>hostrecheckseconds</c>), to tell a value given from a default.</summary>
    public static IReadOnlySet<string> GivenKeys(string connectionString) =>
        new DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>()
            .Select(k => k.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant()).ToHashSet();

    /// <summary>Applies the defaults above to <paramref name="builder"/> when its connection string lists several hosts.</summary>
    /// <param name="builder">The builder to change.</param>
    /// <param name="connectionString">The connection string as configured (to tell a value given from a default).</param>
    public static void ApplyFailoverDefaults(NpgsqlConnectionStringBuilder builder, string connectionString)
    {
        if (Of(connectionString).Count < 2) return;
        var given = GivenKeys(connectionString);
        if (!given.Contains("targetsessionattributes")) builder.TargetSessionAttributes = "primary";
        if (!given.Contains("hostrecheckseconds")) builder.HostRecheckSeconds = DefaultHostRecheckSeconds;
    }
}
