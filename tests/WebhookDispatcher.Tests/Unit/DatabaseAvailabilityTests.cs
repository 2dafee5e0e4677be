using System.Net.Sockets;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>Which failures the API answers 503 (the database is away) rather than 500.</summary>
public sealed class DatabaseAvailabilityTests
{
    private static PostgresException Server(string sqlState) => new("message", "FATAL", "FATAL", sqlState);

    [TestCase("57P01")] // admin_shutdown: the restart cut the session
    [TestCase("57P02")] // crash_shutdown
    [TestCase("57P03")] // cannot_connect_now: starting up or shutting down
    [TestCase("57014")] // query_canceled (class 57, operator intervention)
    [TestCase("08006")] // connection_failure
    [TestCase("08001")] // unable to establish a connection
    public void Shutdown_and_connection_states_mean_unavailable(string sqlState) =>
        Assert.That(DatabaseAvailability.IsUnavailable(Server(sqlState)), Is.True);

    [TestCase("23505")] // unique_violation
    [TestCase("42P01")] // undefined_table: a missing migration is a 500, not a wait
    [TestCase("40001")] // serialization_failure
    public void Other_states_are_not_unavailability(string sqlState) =>
        Assert.That(DatabaseAvailability.IsUnavailable(Server(sqlState)), Is.False);

    [Test]
    public void Socket_io_and_timeout_failures_under_Npgsql_mean_unavailable() => Assert.Multiple(() =>
    {
        Assert.That(DatabaseAvailability.IsUnavailable(new NpgsqlException("Failed to connect", new SocketException((int)SocketError.ConnectionRefused))), Is.True);
        Assert.That(DatabaseAvailability.IsUnavailable(new NpgsqlException("Exception while reading", new EndOfStreamException())), Is.True);
        Assert.That(DatabaseAvailability.IsUnavailable(new NpgsqlException("The connection pool has been exhausted", new TimeoutException())), Is.True);
        Assert.That(DatabaseAvailability.IsUnavailable(new NpgsqlException("No suitable host was found.")), Is.True);
    });

    [Test]
    public void What_EF_Core_wraps_is_looked_through() => Assert.Multiple(() =>
    {
        Assert.That(DatabaseAvailability.IsUnavailable(new RetryLimitExceededException("retries exhausted", Server("57P03"))), Is.True);
        Assert.That(DatabaseAvailability.IsUnavailable(new InvalidOperationException("outer", new NpgsqlException("x", new IOException()))), Is.True);
        Assert.That(DatabaseAvailability.IsUnavailable(new RetryLimitExceededException("retries exhausted", Server("23505"))), Is.False);
    });

    [Test]
    public void Failures_of_our_own_are_not_unavailability() => Assert.Multiple(() =>
    {
        Assert.That(DatabaseAvailability.IsUnavailable(new InvalidOperationException("bug")), Is.False);
        Assert.That(DatabaseAvailability.IsUnavailable(new NpgsqlException("bad parameter")), Is.False);
        Assert.That(DatabaseAvailability.IsUnavailable(new TimeoutException()), Is.False, "a timeout not from the database");
    });

    [Test]
    public void The_execution_strategy_retries_the_shutdown_states() =>
        Assert.That(DatabaseAvailability.TransientSqlStates, Is.SupersetOf(new[] { "57P01", "57P02", "57P03", "08000", "08003", "08006" }));
}
