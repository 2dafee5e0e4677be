using Npgsql;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// Reads the payload of one delivery for the API's and the operator's delivery detail, wherever
/// it is stored (docs/decisions/0009): in the delivery row, or once per event in
/// <c>webhook_event_payloads</c> (the row's <c>payload</c> null, its <c>payload_id</c> set).
/// </summary>
public static class DeliveryPayloadReader
{
    /// <summary>What the detail says when a delivery's payload is no longer stored.</summary>
    public const string GoneText =
        "The payload of this delivery is no longer stored: it was kept once for its event, and that copy has since been removed. " +
        "The delivery's record and its attempts remain.";

    /// <summary>
    /// The exact JSON body the delivery sends (or sent) on every attempt: <paramref name="inline"/>
    /// when the row held it, else the event's stored copy; null when that copy is gone.
    /// </summary>
    /// <param name="db">The data source.</param>
    /// <param name="delivery">The delivery's id.</param>
    /// <param name="inline">The row's <see cref="WebhookDelivery.Payload"/>, already read (no statement then).</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task<string?> ReadAsync(NpgsqlDataSource db, Guid delivery, string? inline, CancellationToken cancellationToken)
    {
        if (inline is not null) return inline;
        // Both tables are partitioned by day of their UUID version 7 id: the delivery is found by
        // its id, and its payload by the payload's id (its own day, which can be the day before
        // the delivery's at midnight), so each read touches one partition.
        await using var command = db.CreateCommand("""
            SELECT coalesce(d.payload, (SELECT p.payload FROM webhook_event_payloads p WHERE p.id = d.payload_id))
            FROM webhook_deliveries d WHERE d.id = $1
            """);
        command.Parameters.Add(new() { Value = delivery });
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }
}
