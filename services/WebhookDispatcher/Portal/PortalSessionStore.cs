using Npgsql;
using NpgsqlTypes;

namespace WebhookDispatcher.Portal;

/// <summary>A portal session as the store knows it.</summary>
/// <param name="Id">The session's id (also the link's).</param>
/// <param name="UserId">The user whose webhooks it shows; null for an operator session.</param>
/// <param name="Operator">Who an operator session belongs to (the operator's <c>sub</c>); null for a user session.</param>
/// <param name="ReadOnly">Whether it may only look.</param>
/// <param name="ExpiresAt">When the session ends (UTC).</param>
public sealed record PortalSession(Guid Id, string? UserId, string? Operator, bool ReadOnly, DateTimeOffset ExpiresAt);

/// <summary>What <see cref="PortalSessionStore.MintAsync"/> did.</summary>
/// <param name="Token">The new link's token; null when the rate limit refused it.</param>
/// <param name="ExpiresAt">When the link stops opening (UTC); null when refused.</param>
/// <param name="RetryAfterSeconds">When refused: seconds until one more link is allowed, 1–60; otherwise 0.</param>
public sealed record MintResult(string? Token, DateTimeOffset? ExpiresAt, int RetryAfterSeconds);

/// <summary>
/// The SQL of portal links and sessions (table <c>webhook_portal_sessions</c>, one row per link):
/// minting stores the link token's hash; opening the link swaps it, in one conditional UPDATE, for
/// a session token's hash, so a link opens at most once even when two browsers race; a request
/// authenticates by the session token's hash. Times come from the database's clock.
/// </summary>
public sealed class PortalSessionStore(NpgsqlDataSource db)
{
    /// <summary>
    /// Stores a new link and returns its token and expiry; or, when <paramref name="perMinute"/>
    /// links were made for the same portal (user or operator) in the last 60 seconds, stores nothing
    /// and returns when one more is allowed: once the <paramref name="perMinute"/>-th newest of them
    /// is 60 seconds old, in whole seconds rounded up, 1–60. Also deletes up
    /// to 100 rows whose link and session ended more than a day ago, so the table stays small
    /// without a job of its own.
    /// </summary>
    /// <param name="userId">The user whose portal it opens; null for an operator link.</param>
    /// <param name="operatorId">The operator it is for; null for a user link.</param>
    /// <param name="readOnly">Whether the session may only look.</param>
    /// <param name="createdBy">The <c>sub</c> of the credential that asked for it.</param>
    /// <param name="expiresInSeconds">How long the link may be opened, 60–86400 seconds.</param>
    /// <param name="perMinute">Links one portal may get in any 60 seconds (<see cref="PortalOptions.LinksPerMinute"/>).</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <exception cref="NpgsqlException">The database failed; nothing was stored.</exception>
    public async Task<MintResult> MintAsync(string? userId, string? operatorId, bool readOnly, string createdBy,
        int expiresInSeconds, int perMinute, CancellationToken cancellationToken)
    {
        var token = PortalTokens.New(PortalTokens.LinkPrefix);
        // Counted and inserted under a transaction-scoped advisory lock on the portal, so that
        // concurrent mints for one portal, on any replica, count one after another; the time is
        // read after the lock is granted. A user's portal and an operator's of the same name are
        // counted apart.
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var command = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                {
                    Parameters = { new() { Value = LockSpace }, new() { Value = userId is null ? "operator:" + operatorId : "user:" + userId } },
                },
                new NpgsqlBatchCommand("""
                    WITH t AS (SELECT clock_timestamp() AS now),
                    old AS (DELETE FROM webhook_portal_sessions WHERE id IN (
                            SELECT id FROM webhook_portal_sessions
                            WHERE greatest(link_expires_at, coalesce(session_expires_at, link_expires_at)) < (SELECT now FROM t) - interval '1 day' LIMIT 100)),
                    recent AS (
                        SELECT created_at FROM webhook_portal_sessions
                        WHERE coalesce(user_id, operator) = coalesce($3, $4) AND (user_id IS NULL) = ($3 IS NULL)
                          AND created_at > (SELECT now FROM t) - interval '60 seconds'
                        ORDER BY created_at DESC LIMIT $8),
                    made AS (
                        INSERT INTO webhook_portal_sessions (id, link_hash, user_id, operator, read_only, created_by, created_at, link_expires_at)
                        SELECT $1, $2, $3, $4, $5, $6, t.now, t.now + make_interval(secs => $7) FROM t
                        WHERE (SELECT count(*) FROM recent) < $8
                        RETURNING link_expires_at)
                    SELECT (SELECT link_expires_at FROM made),
                           (SELECT ceil(extract(epoch FROM min(created_at) + interval '60 seconds' - (SELECT now FROM t)))::int FROM recent)
                    """)
                {
                    Parameters =
                    {
                        new() { Value = Guid.CreateVersion7() },
                        new() { Value = PortalTokens.Hash(token) },
                        new() { Value = (object?)userId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text },
                        new() { Value = (object?)operatorId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text },
                        new() { Value = readOnly },
                        new() { Value = createdBy },
                        new() { Value = (double)expiresInSeconds },
                        new() { Value = perMinute },
                    },
                },
            },
        };
        MintResult result;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            await reader.NextResultAsync(cancellationToken); // the lock's row
            await reader.ReadAsync(cancellationToken);
            result = !reader.IsDBNull(0)
                ? new MintResult(token, new DateTimeOffset(reader.GetDateTime(0), TimeSpan.Zero), 0)
                : new MintResult(null, null, Math.Clamp(reader.IsDBNull(1) ? 60 : reader.GetInt32(1), 1, 60));
        }
        await transaction.CommitAsync(cancellationToken);
        return result;
    }

    /// <summary>
    /// First key of <c>pg_advisory_xact_lock(int, int)</c> for a portal's mints, the second being
    /// <c>hashtext</c> of <c>user:</c> or <c>operator:</c> and the id; apart from
    /// <see cref="Subscriptions.SubscriptionLimits"/>' pairs. Two portals whose keys hash alike only wait for each other.
    /// </summary>
    private const int LockSpace = 0x504F_5254; // "PORT"

    /// <summary>
    /// Opens a link: if <paramref name="linkToken"/> names a link that was never opened and has
    /// not expired, marks it used and returns a new session token lasting
    /// <paramref name="sessionMinutes"/>; otherwise null (expired, used, unknown or tampered:
    /// one answer for all).
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed; the link is unchanged.</exception>
    public async Task<(string Token, PortalSession Session)?> OpenAsync(string linkToken, int sessionMinutes, CancellationToken cancellationToken)
    {
        if (!PortalTokens.IsWellFormed(linkToken, PortalTokens.LinkPrefix)) return null;
        var token = PortalTokens.New(PortalTokens.SessionPrefix);
        await using var command = db.CreateCommand("""
            UPDATE webhook_portal_sessions
            SET used_at = now(), session_hash = $2, session_expires_at = now() + make_interval(mins => $3)
            WHERE link_hash = $1 AND used_at IS NULL AND link_expires_at > now()
            RETURNING id, user_id, operator, read_only, session_expires_at
            """);
        command.Parameters.Add(new() { Value = PortalTokens.Hash(linkToken) });
        command.Parameters.Add(new() { Value = PortalTokens.Hash(token) });
        command.Parameters.Add(new() { Value = sessionMinutes });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (token, Read(reader)) : null;
    }

    /// <summary>The live session whose token is <paramref name="sessionToken"/>; null when unknown or ended.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<PortalSession?> FindAsync(string sessionToken, CancellationToken cancellationToken)
    {
        if (!PortalTokens.IsWellFormed(sessionToken, PortalTokens.SessionPrefix)) return null;
        await using var command = db.CreateCommand("""
            SELECT id, user_id, operator, read_only, session_expires_at FROM webhook_portal_sessions
            WHERE session_hash = $1 AND session_expires_at > now()
            """);
        command.Parameters.Add(new() { Value = PortalTokens.Hash(sessionToken) });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    /// <summary>Ends a session now (the page's sign-out); no-op for an unknown one.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task EndAsync(Guid sessionId, CancellationToken cancellationToken)
    {
        await using var command = db.CreateCommand("UPDATE webhook_portal_sessions SET session_expires_at = now() WHERE id = $1 AND session_expires_at > now()");
        command.Parameters.Add(new() { Value = sessionId });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static PortalSession Read(NpgsqlDataReader r) => new(r.GetGuid(0), r.IsDBNull(1) ? null : r.GetString(1),
        r.IsDBNull(2) ? null : r.GetString(2), r.GetBoolean(3), r.GetFieldValue<DateTimeOffset>(4));
}
