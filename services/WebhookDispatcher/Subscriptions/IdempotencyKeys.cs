using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
using WebhookDispatcher.Data;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// <c>Idempotency-Key</c> on <c>POST /api/webhooks</c> (as Stripe's and Svix's APIs take it,
/// draft-ietf-httpapi-idempotency-key-header): a client that lost the answer to a create sends
/// the same request with the same key again and gets the subscription the first one made, with its
/// secret, instead of a second subscription. Kept per user for <see cref="Lifetime"/>; the same
/// key with another body answers 422 and stores nothing. Read and written in the creating
/// transaction, under the user's lock (<see cref="SubscriptionLimits"/>), so two creates with one
/// key, on any replica, make one subscription.
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

    /// <summary>The request's fingerprint: SHA-256 of its JSON body written compactly (whitespace does not count; field order does).</summary>
    public static byte[] Fingerprint(JsonElement body) => SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(body));

    /// <summary>What an earlier request with the key made.</summary>
    /// <param name="SubscriptionId">The subscription it created.</param>
    /// <param name="SameRequest">Whether its fingerprint is this request's.</param>
    public sealed record Earlier(Guid SubscriptionId, bool SameRequest);

    /// <summary>
    /// In <paramref name="db"/>'s open transaction: forgets the user's keys older than
    /// <see cref="Lifetime"/> and returns what an earlier request with <paramref name="key"/> made, or null.
    /// </summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task<Earlier?> FindAsync(WebhookDbContext db, string userId, string key, byte[] fingerprint, CancellationToken cancellationToken)
    {
        var (connection, transaction) = Open(db);
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("DELETE FROM webhook_idempotency_keys WHERE user_id = $1 AND created_at < clock_timestamp() - $2")
                {
                    Parameters = { Text(userId), new() { Value = Lifetime } },
                },
                new NpgsqlBatchCommand("SELECT subscription_id, request_hash = $3 FROM webhook_idempotency_keys WHERE user_id = $1 AND idempotency_key = $2")
                {
                    Parameters = { Text(userId), Text(key), new() { Value = fingerprint } },
                },
            },
        };
        // The DELETE returns no rows: the reader starts at the SELECT's.
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new Earlier(reader.GetGuid(0), reader.GetBoolean(1)) : null;
    }

    /// <summary>In <paramref name="db"/>'s open transaction: remembers that <paramref name="key"/> made <paramref name="subscriptionId"/> at <paramref name="now"/>.</summary>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public static async Task StoreAsync(WebhookDbContext db, string userId, string key, byte[] fingerprint, Guid subscriptionId, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var (connection, transaction) = Open(db);
        await using var insert = new NpgsqlCommand("""
            INSERT INTO webhook_idempotency_keys (user_id, idempotency_key, request_hash, subscription_id, created_at)
            VALUES ($1, $2, $3, $4, $5)
            """, connection, transaction);
        insert.Parameters.Add(Text(userId));
        insert.Parameters.Add(Text(key));
        insert.Parameters.Add(new() { Value = fingerprint });
        insert.Parameters.Add(new() { Value = subscriptionId });
        insert.Parameters.Add(new() { Value = now });
        await insert.ExecuteNonQueryAsync(cancellationToken);
    }

    private static (NpgsqlConnection, NpgsqlTransaction) Open(WebhookDbContext db) =>
        ((NpgsqlConnection)db.Database.GetDbConnection(),
         db.Database.CurrentTransaction?.GetDbTransaction() as NpgsqlTransaction
         ?? throw new InvalidOperationException("Idempotency keys are read and written inside the creating transaction."));

    private static NpgsqlParameter Text(string value) => new() { Value = value, NpgsqlDbType = NpgsqlDbType.Varchar };
}
