using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using NpgsqlTypes;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Portal;

/// <summary>One change an operator asked for, as the audit trail keeps it.</summary>
/// <param name="Id">The row's id (UUID version 7).</param>
/// <param name="CreatedAt">When the change was answered (UTC, the database's clock).</param>
/// <param name="Operator">Who asked (the operator's <c>sub</c>).</param>
/// <param name="Action"><c>retry_delivery</c> or <c>recover_deliveries</c>.</param>
/// <param name="SubscriptionId">The subscription changed.</param>
/// <param name="UserId">Its owner.</param>
/// <param name="DeliveryId">The delivery retried (<c>retry_delivery</c>); null for a recovery.</param>
/// <param name="Since">The time a recovery counted from (<c>recover_deliveries</c>); null for a retry.</param>
/// <param name="StatusCode">The HTTP status the operator got (202 done; 404, 409 refused).</param>
/// <param name="Result">What happened, in words (e.g. <c>3 restarted</c>, <c>Delivery already pending</c>).</param>
public sealed record OperatorAuditEntry(Guid Id, DateTimeOffset CreatedAt, string Operator, string Action, Guid SubscriptionId, string UserId,
    Guid? DeliveryId, DateTimeOffset? Since, int StatusCode, string Result);

/// <summary>The answer of <c>GET /api/operator/audit</c>.</summary>
/// <param name="Data">Entries, newest first.</param>
/// <param name="Limit">The most returned.</param>
/// <param name="HasMore">Whether older entries matched too.</param>
/// <param name="NextCursor">When <paramref name="HasMore"/>: pass it as <c>cursor</c> with the same filters for the older entries.</param>
public sealed record OperatorAuditResponse(IReadOnlyList<OperatorAuditEntry> Data, int Limit, bool HasMore, string? NextCursor);

/// <summary>
/// The operator audit trail (table <c>webhook_operator_audit</c>): every change asked for through
/// the operator API is stored with the operator, the subscription and its owner, and the answer
/// given, besides its log line (category <see cref="OperatorAudit"/>); operators read it at
/// <c>GET /api/operator/audit</c>. Rows are few (one per operator change) and are kept.
/// </summary>
public sealed class OperatorAuditTrail(NpgsqlDataSource db, ILogger<OperatorAudit> log)
{
    /// <summary>The <c>action</c> of a retried delivery.</summary>
    public const string RetryDelivery = "retry_delivery";

    /// <summary>The <c>action</c> of a recovery of an endpoint's failed deliveries.</summary>
    public const string RecoverDeliveries = "recover_deliveries";

    /// <summary>Longest stored <see cref="OperatorAuditEntry.Result"/>, in characters.</summary>
    public const int MaxResultChars = 256;

    /// <summary>
    /// Stores one entry. The change it records is made already, so the insert is not cancelled
    /// with the request, and a database failure here is logged (the change's log line, written
    /// first, stays the record) and not thrown.
    /// </summary>
    /// <param name="operatorId">Who asked (the operator session's operator).</param>
    /// <param name="action"><see cref="RetryDelivery"/> or <see cref="RecoverDeliveries"/>.</param>
    /// <param name="subscriptionId">The subscription changed.</param>
    /// <param name="userId">Its owner.</param>
    /// <param name="deliveryId">The delivery retried; null for a recovery.</param>
    /// <param name="since">The time a recovery counted from; null for a retry.</param>
    /// <param name="statusCode">The HTTP status answered.</param>
    /// <param name="result">What happened, in words; cut to <see cref="MaxResultChars"/> characters.</param>
    public async Task RecordAsync(string operatorId, string action, Guid subscriptionId, string userId, Guid? deliveryId, DateTimeOffset? since,
        int statusCode, string result)
    {
        try
        {
            await using var command = db.CreateCommand("""
                INSERT INTO webhook_operator_audit (id, operator, action, subscription_id, user_id, delivery_id, since, status_code, result)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """);
            command.Parameters.Add(new() { Value = Guid.CreateVersion7() });
            command.Parameters.Add(new() { Value = operatorId });
            command.Parameters.Add(new() { Value = action });
            command.Parameters.Add(new() { Value = subscriptionId });
            command.Parameters.Add(new() { Value = userId });
            command.Parameters.Add(new() { Value = (object?)deliveryId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid });
            command.Parameters.Add(new() { Value = (object?)since ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            command.Parameters.Add(new() { Value = statusCode });
            command.Parameters.Add(new() { Value = result.Length > MaxResultChars ? result[..MaxResultChars] : result });
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException ex)
        {
            log.LogWarning("The audit row of operator {Operator}'s {Action} on webhook {SubscriptionId} was not stored ({Error}); its log line above is the record",
                operatorId, action, subscriptionId, ex.Message);
        }
    }

    /// <summary>Entries newest first, of one operator and/or one user when given, at most <paramref name="limit"/> (and whether more matched).</summary>
    /// <param name="operatorId">Only this operator's entries; null for all.</param>
    /// <param name="userId">Only entries about this user's subscriptions; null for all.</param>
    /// <param name="limit">The most entries returned, 1 to <see cref="OperatorApi.MaxSearchResults"/>.</param>
    /// <param name="after">The last entry of the previous page (its time and id): only older ones; null from the newest.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<(List<OperatorAuditEntry> Entries, bool HasMore)> ListAsync(string? operatorId, string? userId, int limit,
        (DateTimeOffset CreatedAt, Guid Id)? after, CancellationToken cancellationToken)
    {
        await using var command = db.CreateCommand("""
            SELECT id, created_at, operator, action, subscription_id, user_id, delivery_id, since, status_code, result
            FROM webhook_operator_audit
            WHERE ($1::text IS NULL OR operator = $1) AND ($2::text IS NULL OR user_id = $2)
              AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
            ORDER BY created_at DESC, id DESC LIMIT $3
            """);
        command.Parameters.Add(new() { Value = (object?)operatorId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new() { Value = (object?)userId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new() { Value = limit + 1 });
        command.Parameters.Add(new() { Value = (object?)after?.CreatedAt ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new() { Value = (object?)after?.Id ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid });
        var entries = new List<OperatorAuditEntry>();
        await using var r = await command.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken))
            entries.Add(new OperatorAuditEntry(r.GetGuid(0), r.GetFieldValue<DateTimeOffset>(1), r.GetString(2), r.GetString(3), r.GetGuid(4), r.GetString(5),
                r.IsDBNull(6) ? null : r.GetGuid(6), r.IsDBNull(7) ? null : r.GetFieldValue<DateTimeOffset>(7), r.GetInt32(8), r.GetString(9)));
        var more = entries.Count > limit;
        if (more) entries.RemoveAt(limit);
        return (entries, more);
    }

    /// <summary><c>GET /api/operator/audit?operator=&amp;user_id=&amp;limit=&amp;cursor=</c>: the trail, newest first, by cursor pages.</summary>
    internal static async Task<Results<Ok<OperatorAuditResponse>, ValidationProblem>> Get(OperatorAuditTrail trail,
        [FromQuery(Name = "operator")] string? operatorId, [FromQuery(Name = "user_id")] string? userId, [FromQuery(Name = "limit")] string? limitText,
        [FromQuery(Name = "cursor")] string? cursorText, CancellationToken cancellationToken)
    {
        var q = new ApiInput.Query();
        var cursor = cursorText is null ? null : PageCursor.Decode(cursorText, PageCursor.Lists.OperatorAudit, Guid.Empty);
        if (cursorText is not null && cursor is null) q.Errors["cursor"] = ["Not a cursor this list issued; pass next_cursor from the previous answer unchanged."];
        if (operatorId is not null && !AuthExtensions.IsValidUserId(operatorId)) q.Errors["operator"] = ["Must be an operator's id: 1 to 256 characters."];
        if (userId is not null && !AuthExtensions.IsValidUserId(userId)) q.Errors["user_id"] = ["Must be a user id: 1 to 256 characters."];
        var limit = q.Integer("limit", limitText, 50, 1, OperatorApi.MaxSearchResults);
        if (q.Errors.Count > 0) return TypedResults.ValidationProblem(q.Errors);
        var (entries, more) = await trail.ListAsync(operatorId, userId, limit, cursor is null ? null : (cursor.CreatedAt, cursor.Id), cancellationToken);
        return TypedResults.Ok(new OperatorAuditResponse(entries, limit, more,
            more ? new PageCursor(PageCursor.Lists.OperatorAudit, Guid.Empty, entries[^1].CreatedAt, entries[^1].Id).Encode() : null));
    }
}
