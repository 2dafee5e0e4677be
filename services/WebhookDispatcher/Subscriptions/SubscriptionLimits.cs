using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The per-user limits on creating subscriptions (issue 14): at most
/// <see cref="SubscriptionOptions.MaxPerUser"/> not deleted, and at most
/// <see cref="SubscriptionOptions.CreatesPerMinute"/> created in any <see cref="WindowSeconds"/>
/// seconds, deleted ones included. Both are counted in the creating transaction, under a
/// transaction-scoped advisory lock on the user, so concurrent creates by one user, on any replica
/// of the API, are counted one after another and each insert commits with the count it was checked
/// against. The clock is the database's: the time read under the lock becomes the new
/// subscription's <c>created_at</c>, which is what the window counts.
/// </summary>
internal static class SubscriptionLimits
{
    /// <summary>Length of the creation-rate window, in seconds.</summary>
    public const int WindowSeconds = 60;

    /// <summary>
    /// First key of <c>pg_advisory_xact_lock(int, int)</c>, the second being <c>hashtext(user_id)</c>.
    /// Two 32-bit keys live apart from the single 64-bit keys (<see cref="HistoryRetention.LockKey"/>),
    /// and this one keeps the user locks apart from any other pair. Two users whose ids hash alike
    /// only wait for each other.
    /// </summary>
    private const int LockSpace = 0x5355_4253; // "SUBS"

    /// <summary>What the count under the lock found.</summary>
    /// <param name="Now">The database's clock, read after the lock was granted (UTC).</param>
    /// <param name="Subscriptions">The user's subscriptions not deleted.</param>
    /// <param name="CreatedInWindow">The user's subscriptions created in the last <see cref="WindowSeconds"/> seconds, deleted ones included.</param>
    /// <param name="WindowFreesAt">When the creation rate allows one more (UTC); null when it allows one now.</param>
    /// <param name="AlreadyStored">The subscription being created is stored already (an earlier try of this transaction committed).</param>
    public sealed record Count(DateTimeOffset Now, long Subscriptions, long CreatedInWindow, DateTimeOffset? WindowFreesAt, bool AlreadyStored);

    /// <summary>
    /// Takes the user's lock (held until the current transaction ends) and counts. Must run inside
    /// a transaction of <paramref name="db"/>.
    /// </summary>
    /// <param name="db">The context whose transaction holds the lock and will insert.</param>
    /// <param name="userId">The creating user.</param>
    /// <param name="id">Id of the subscription about to be inserted.</param>
    /// <param name="createsPerMinute">The rate limit, 1 or more.</param>
    /// <param name="cancellationToken">Cancels the wait for the lock and the count.</param>
    /// <exception cref="InvalidOperationException">No transaction is open on <paramref name="db"/>.</exception>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task<Count> LockAndCountAsync(WebhookDbContext db, string userId, Guid id, int createsPerMinute,
        CancellationToken cancellationToken)
    {
        var (connection, transaction) = db.OpenTransaction("The limits are counted");
        // The window's (createsPerMinute)-th newest creation, if there is one, is what stands in
        // the way: once it is older than the window, one more fits.
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            // The first statement of the creating transaction: only its command timeout ends it
            // against a database that hangs (DataExtensions.ApiCommandTimeoutSeconds).
            Timeout = db.Database.GetCommandTimeout() ?? connection.CommandTimeout,
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                {
                    Parameters = { new() { Value = LockSpace }, new() { Value = userId } },
                },
                new NpgsqlBatchCommand($"""
                    SELECT t.now,
                           (SELECT count(*) FROM webhook_subscriptions WHERE user_id = $1 AND deleted_at IS NULL),
                           (SELECT count(*) FROM webhook_subscriptions WHERE user_id = $1 AND created_at > t.now - interval '{WindowSeconds} seconds'),
                           (SELECT created_at + interval '{WindowSeconds} seconds' FROM webhook_subscriptions
                            WHERE user_id = $1 AND created_at > t.now - interval '{WindowSeconds} seconds'
                            ORDER BY created_at DESC OFFSET $2 LIMIT 1),
                           EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = $3)
                    FROM (SELECT clock_timestamp() AS now) t
                    """)
                {
                    Parameters =
                    {
                        new() { Value = userId, NpgsqlDbType = NpgsqlDbType.Varchar },
                        new() { Value = createsPerMinute - 1 },
                        new() { Value = id },
                    },
                },
            },
        };
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken); // the lock's row
        await reader.ReadAsync(cancellationToken);
        return new Count(reader.GetFieldValue<DateTimeOffset>(0), reader.GetInt64(1), reader.GetInt64(2),
            reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTimeOffset>(3), reader.GetBoolean(4));
    }

    /// <summary>The 409 for a user at <paramref name="limit"/> subscriptions: problem details with <c>limit</c> and <c>current</c>.</summary>
    public static ProblemHttpResult TooManySubscriptions(int limit, long current) => TypedResults.Problem(
        statusCode: StatusCodes.Status409Conflict,
        title: "Subscription limit reached",
        detail: $"A user may have at most {limit} subscriptions and you have {current}; delete one before creating another.",
        extensions: new Dictionary<string, object?> { ["limit"] = limit, ["current"] = current });

    /// <summary>
    /// The 429 for a user past <paramref name="limit"/> creations a minute: problem details with
    /// <c>limit</c>, <c>current</c> and <c>retry_after_seconds</c>, and the <c>Retry-After</c> header
    /// (RFC 9110 §10.2.3) in whole seconds, at least 1, rounded up so that a retry then is allowed.
    /// </summary>
    public static ProblemHttpResult TooManyCreations(HttpResponse response, int limit, long current, DateTimeOffset now, DateTimeOffset freesAt)
    {
        var seconds = Math.Clamp((int)Math.Ceiling((freesAt - now).TotalSeconds), 1, WindowSeconds);
        response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return TypedResults.Problem(
            statusCode: StatusCodes.Status429TooManyRequests,
            title: "Too many subscriptions created",
            detail: $"A user may create at most {limit} subscriptions in any {WindowSeconds} seconds, deleted ones included; "
                + $"the next one is allowed in {seconds} s.",
            extensions: new Dictionary<string, object?> { ["limit"] = limit, ["current"] = current, ["retry_after_seconds"] = seconds });
    }
}
