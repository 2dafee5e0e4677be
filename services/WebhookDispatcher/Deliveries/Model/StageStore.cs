using Npgsql;
using NpgsqlTypes;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// What the stores of the delivery wing share: the data source, the reaction to a failed
/// statement, and parameter helpers. Each stage owns its SQL in a store of its own
/// (<see cref="FanOutStore"/>, <see cref="LaneStore"/>, <see cref="AttemptStore"/>,
/// <see cref="RecoveryStore"/>); every batch is one statement (one round trip, one commit), and
/// every state change is a conditional UPDATE, so duplicate messages, concurrent replicas and a
/// reconciler re-publish cannot cause a second attempt of the same number.
/// </summary>
/// <remarks>
/// Statements that pick deliveries by id say "unfinished" as <c>status NOT IN ('success',
/// 'failed', 'cancelled')</c>, not <c>status IN ('pending', 'retrying')</c>: the latter matches the
/// predicate of the partial due index, and the planner then scanned every unfinished delivery of
/// the partition through it instead of looking up the ids. The statements that do want that
/// index (the reconciler's scans, the backlogs) keep it.
/// </remarks>
public abstract class StageStore(NpgsqlDataSource db)
{
    /// <summary>The database.</summary>
    protected NpgsqlDataSource Db { get; } = db;

    /// <summary>
    /// Tells the store a statement failed: when the failure shows a broken connection (the
    /// database restarted) or a statement left corrupt on its connection, the pool is cleared
    /// (<see cref="Data.BrokenConnections.ClearIfBroken"/>).
    /// </summary>
    public void OnFailure(Exception exception) => Data.BrokenConnections.ClearIfBroken(Db, exception);

    /// <summary>A batch command with positional parameters (<c>$1</c> …).</summary>
    protected static NpgsqlBatchCommand Command(string sql, params object?[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
            command.Parameters.Add(Parameter(value));
        return command;
    }

    /// <summary>Adds positional parameters to <paramref name="command"/>.</summary>
    protected static void AddParameters(NpgsqlCommand command, params object?[] values)
    {
        foreach (var value in values)
            command.Parameters.Add(Parameter(value));
    }

    /// <summary>A positional parameter; a null value is sent as a typed null (<paramref name="nullType"/>).</summary>
    protected static NpgsqlParameter Parameter(object? value, NpgsqlDbType nullType = NpgsqlDbType.Unknown) => value switch
    {
        null => new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = nullType },
        _ => new NpgsqlParameter { Value = value },
    };
}
