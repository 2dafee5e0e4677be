using System.Data.Common;
using System.Net.Sockets;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Npgsql;

namespace WebhookDispatcher.Data;

/// <summary>
/// After PostgreSQL restarts, every idle connection in the pool is dead, and Npgsql hands them
/// out one by one (it does not test a connection before lending it): each fails the first
/// statement it runs. On the first failure that shows a broken connection, the whole pool is
/// cleared, so only one statement fails and the next ones open fresh connections.
/// </summary>
public static class BrokenConnections
{
    /// <summary>
    /// Whether <paramref name="exception"/> means the connection (and so, most likely, every
    /// pooled one) is gone: an I/O or socket failure, or a server shutting down or restarting
    /// (SQL states of class 57P: admin_shutdown, crash_shutdown, cannot_connect_now).
    /// </summary>
    public static bool IsBroken(Exception exception) => exception switch
    {
        PostgresException pg => pg.SqlState.StartsWith("57P", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException npgsql => npgsql.InnerException is IOException or SocketException or EndOfStreamException || npgsql.IsTransient,
        _ => false,
    };

    /// <summary>
    /// Whether <paramref name="exception"/> is the server refusing a statement's data (SQL state
    /// class 22, such as a NUL in a text value). Npgsql 10 can then leave that statement's
    /// automatic preparation corrupt on its connection, and its next run there fails with
    /// "Received unexpected backend message DataRow" (npgsql/npgsql#6391, open); closing the
    /// pool's connections drops it. Rare by design: inputs are validated before they reach SQL.
    /// </summary>
    public static bool LeavesStatementCorrupt(Exception exception) =>
        exception is PostgresException { SqlState: var state } && state.StartsWith("22", StringComparison.Ordinal);

    /// <summary>
    /// Clears <paramref name="dataSource"/>'s pool when <paramref name="exception"/> shows a broken
    /// connection (<see cref="IsBroken"/>) or a statement left corrupt on its connection
    /// (<see cref="LeavesStatementCorrupt"/>); returns whether it did.
    /// </summary>
    public static bool ClearIfBroken(NpgsqlDataSource dataSource, Exception exception)
    {
        if (!IsBroken(exception) && !LeavesStatementCorrupt(exception)) return false;
        dataSource.Clear();
        return true;
    }

    /// <summary>Does the same for EF Core's commands and connections.</summary>
    internal sealed class Interceptor(NpgsqlDataSource dataSource) : IDbCommandInterceptor, IDbConnectionInterceptor
    {
        public void CommandFailed(DbCommand command, CommandErrorEventData eventData) => ClearIfBroken(dataSource, eventData.Exception);

        public Task CommandFailedAsync(DbCommand command, CommandErrorEventData eventData, CancellationToken cancellationToken = default)
        {
            ClearIfBroken(dataSource, eventData.Exception);
            return Task.CompletedTask;
        }

        public void ConnectionFailed(DbConnection connection, ConnectionErrorEventData eventData) => ClearIfBroken(dataSource, eventData.Exception);

        public Task ConnectionFailedAsync(DbConnection connection, ConnectionErrorEventData eventData, CancellationToken cancellationToken = default)
        {
            ClearIfBroken(dataSource, eventData.Exception);
            return Task.CompletedTask;
        }
    }
}
