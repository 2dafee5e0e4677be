using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Primitives;
using Npgsql;
using NpgsqlTypes;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// <c>Idempotency-Key</c> on <c>POST /api/webhooks</c> and <c>POST …/rotate-secret</c> (as Stripe's
/// and Svix's APIs take it, draft-ietf-httpapi-idempotency-key-header): a client that lost the
/// answer sends the same request with the same key again and gets what the first one made (the
/// subscription with its secret; the rotated secret) instead of a second subscription or a second
/// rotation (which would end the first one's grace period at once). Kept per user for
/// <see cref="Lifetime"/>; the same key with another request answers 422 and changes nothing.
/// Read and written in the request's transaction under a lock on the user and key, so two
/// requests with one key, on any replica, take turns and make one change.
/// </summary>
internal static class IdempotencyKeys
{
    /// <summary>The request header.</summary>
    public const string Header = "Idempotency-Key";

    /// <summary>Longest key, in characters (visible ASCII).</summary>
    public const int MaxLength = 255;

    /// <summary>How long a key is remembered: 24 hours, as Stripe's.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(24);

    /// <summary>Why <paramref name="key"/> cannot be a key (1–255 visible ASCII characters), or null when it can.</summary>
    public static string? Problem(string key) =>
        key.Length is 0 or > MaxLength || key.Any(c => c is < '!' or > '~')
            ? $"Must be 1 to {MaxLength} visible ASCII characters, e.g. a UUID."
            : null;

    /// <summary>
    /// The key of a request from its <see cref="Header"/> lines as the server received them: null
    /// without the header; with <see cref="Problem(string)"/>'s reason, or the reason that it came
    /// more than once (ASP.NET Core would join the lines with a comma into one value, a key neither
    /// line sent), when it cannot be one.
    /// </summary>
    public static (string? Key, string? Problem) Read(StringValues lines) => lines.Count switch
    {
        0 => (null, null),
        1 => (lines[0]!, Problem(lines[0]!)),
        _ => (null, $"Send one {Header} header; this request has {lines.Count}."),
    };

    /// <summary>A create's fingerprint: SHA-256 of its JSON body written compactly (whitespace does not count; field order does).</summary>
    public static byte[] Fingerprint(JsonElement body) => SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(body));

    /// <summary>A rotation's fingerprint: the operation and the subscription.</summary>
    public static byte[] RotationFingerprint(Guid subscriptionId) => SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"rotate-secret {subscriptionId}"));

    /// <summary>SHA-256 of a secret a create or a rotation made, to tell later whether it is still the current one.</summary>
    public static byte[] SecretHash(string secret) => SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret));

    /// <summary>What an earlier request with the key made.</summary>
    /// <param name="SubscriptionId">The subscription it created or rotated.</param>
    /// <param name="SameRequest">Whether its fingerprint is this request's.</param>
    /// <param name="ResultHash"><see cref="SecretHash"/> of the secret it made.</param>
    public sealed record Earlier(Guid SubscriptionId, bool SameRequest, byte[]? ResultHash);

    /// <summary>First key of <c>pg_advisory_xact_lock(int, int)</c> for a user's key, the second being <c>hashtext</c> of user and key.</summary>
    private const int LockSpace = 0x4944_454D; // "IDEM"

    /// <summary>
    /// In <paramref name="db"/>'s open transaction: takes the lock on the user's key (held until the
    /// transaction ends), forgets the key if it is older than <see cref="Lifetime"/> (and up to 100
    /// other expired keys) and returns what an earlier request with <paramref name="key"/> made, or null.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task<Earlier?> FindAsync(WebhookDbContext db, string userId, string key, byte[] fingerprint, CancellationToken cancellationToken)
    {
        var (connection, transaction) = db.OpenTransaction("Idempotency keys are read and written");
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock($1, hashtext($2 || ' ' || $3))")
                {
                    Parameters = { new() { Value = LockSpace }, Text(userId), Text(key) },
                },
                // This key if it expired, and up to 100 expired keys of anyone: the table stays small without a job of its own.
                new NpgsqlBatchCommand("""
                    DELETE FROM webhook_idempotency_keys
                    WHERE (user_id = $1 AND idempotency_key = $2 AND created_at < clock_timestamp() - $3)
                       OR (user_id, idempotency_key) IN (SELECT user_id, idempotency_key FROM webhook_idempotency_keys
                                                         WHERE created_at < clock_timestamp() - $3 LIMIT 100)
                    """)
                {
                    Parameters = { Text(userId), Text(key), new() { Value = Lifetime } },
                },
                new NpgsqlBatchCommand("SELECT subscription_id, request_hash = $3, result_hash FROM webhook_idempotency_keys WHERE user_id = $1 AND idempotency_key = $2")
                {
                    Parameters = { Text(userId), Text(key), new() { Value = fingerprint } },
                },
            },
        };
        // The lock's row first; the DELETE returns no rows, so the next result is the SELECT's.
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new Earlier(reader.GetGuid(0), reader.GetBoolean(1), reader.IsDBNull(2) ? null : reader.GetFieldValue<byte[]>(2))
            : null;
    }

    /// <summary>
    /// In <paramref name="db"/>'s open transaction: remembers that <paramref name="key"/> made or
    /// rotated <paramref name="subscriptionId"/> at <paramref name="now"/>, with the hash of the secret it made.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task StoreAsync(WebhookDbContext db, string userId, string key, byte[] fingerprint, Guid subscriptionId, DateTimeOffset now,
        CancellationToken cancellationToken, byte[]? resultHash = null)
    {
        var (connection, transaction) = db.OpenTransaction("Idempotency keys are read and written");
        await using var insert = new NpgsqlCommand("""
            INSERT INTO webhook_idempotency_keys (user_id, idempotency_key, request_hash, subscription_id, created_at, result_hash)
            VALUES ($1, $2, $3, $4, $5, $6)
            """, connection, transaction);
        insert.Parameters.Add(Text(userId));
        insert.Parameters.Add(Text(key));
        insert.Parameters.Add(new() { Value = fingerprint });
        insert.Parameters.Add(new() { Value = subscriptionId });
        insert.Parameters.Add(new() { Value = now });
        insert.Parameters.Add(new() { Value = (object?)resultHash ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bytea });
        await insert.ExecuteNonQueryAsync(cancellationToken);
    }

    private static NpgsqlParameter Text(string value) => new() { Value = value, NpgsqlDbType = NpgsqlDbType.Varchar };
}
