using System.Net.Sockets;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>
/// What the API does about a database that restarted or is away: statements that met a broken
/// connection are run once more on a fresh one, and a database that is still unreachable is
/// told apart from other failures so it can be answered 503 instead of 500.
/// </summary>
/// <remarks>
/// EF Core queries get the retry from its execution strategy (<see cref="DataExtensions"/>, with
/// <see cref="TransientSqlStates"/>); endpoints on raw Npgsql use <see cref="RetryOnceAsync{T}"/>.
/// </remarks>
public static class DatabaseAvailability
{
    /// <summary>
    /// SQL states (PostgreSQL Appendix A) that mean the session or server went away, not that the
    /// statement was wrong: 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now
    /// (starting up, shutting down, recovering), 57P05 idle_session_timeout, and class 08
    /// (connection exceptions).
    /// </summary>
    public static readonly IReadOnlyList<string> TransientSqlStates =
    [
        PostgresErrorCodes.AdminShutdown, PostgresErrorCodes.CrashShutdown, PostgresErrorCodes.CannotConnectNow, "57P05",
        PostgresErrorCodes.ConnectionException, PostgresErrorCodes.ConnectionDoesNotExist, PostgresErrorCodes.ConnectionFailure,
        PostgresErrorCodes.SqlClientUnableToEstablishSqlConnection, PostgresErrorCodes.SqlServerRejectedEstablishmentOfSqlConnection,
        PostgresErrorCodes.TransactionResolutionUnknown, PostgresErrorCodes.ProtocolViolation,
    ];

    /// <summary>
    /// Whether <paramref name="exception"/>, or an exception it wraps (EF Core wraps the driver's in
    /// <c>RetryLimitExceededException</c> or <c>DbUpdateException</c>), says the database cannot be
    /// reached or is not serving: a socket, I/O or timeout failure under an <see cref="NpgsqlException"/>
    /// (refused, reset, pool exhausted, connect timeout), a <see cref="PostgresException"/> of class
    /// 57 (shutdown, starting up, operator intervention) or 08 (connection exception), or Npgsql's
    /// "No suitable host was found" (multi-host connection strings), or a request's database work past
    /// its deadline (<see cref="Subscriptions.DatabaseDeadlineException"/>: a database that hangs).
    /// </summary>
    public static bool IsUnavailable(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case Subscriptions.DatabaseDeadlineException:
                    return true;
                case PostgresException pg:
                    return pg.SqlState.StartsWith("57", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal);
                case NpgsqlException npgsql when npgsql.InnerException is SocketException or IOException or TimeoutException
                                                 || npgsql.Message.StartsWith("No suitable host was found", StringComparison.Ordinal):
                    return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Whether <paramref name="exception"/> (or what it wraps) is PostgreSQL saying that a table or a
    /// column this version uses does not exist (<c>42P01</c>, <c>42703</c>): the database lacks a
    /// migration of this version. A process with workers refuses to start on such a database; an
    /// API-only replica starts (its readiness says <c>migrations</c> Unhealthy) and answers the
    /// requests that need the migration 503 until it is applied.
    /// </summary>
    public static bool IsSchemaBehind(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
            if (e is PostgresException { SqlState: PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedColumn })
                return true;
        return false;
    }

    /// <summary>
    /// Runs <paramref name="operation"/> (one unit of work on connections of <paramref name="dataSource"/>,
    /// safe to run again because its transaction rolled back) and, when it fails on a broken
    /// connection (<see cref="BrokenConnections.IsBroken"/>: the pool held connections the database
    /// closed when it restarted), clears the pool and runs it once more on a fresh connection.
    /// </summary>
    /// <exception cref="NpgsqlException">The second run failed too, or the first failed otherwise.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static async Task<T> RetryOnceAsync<T>(NpgsqlDataSource dataSource, Func<CancellationToken, Task<T>> operation,
        CancellationToken cancellationToken)
    {
        try
        {
            return await operation(cancellationToken);
        }
        // Cleared for a corrupt statement too, but run again only for a broken connection: refused data fails the same way twice.
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && BrokenConnections.ClearIfBroken(dataSource, ex) && BrokenConnections.IsBroken(ex))
        {
            return await operation(cancellationToken);
        }
    }
}
