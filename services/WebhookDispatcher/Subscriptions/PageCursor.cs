using System.Buffers.Binary;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The opaque <c>next_cursor</c> of the list endpoints (keyset pagination, as Stripe and Svix page):
/// the position after the last row of a page, in the lists' order, newest first by
/// (<c>created_at</c>, <c>id</c>). Both are fixed for a row's life, so a client walking the pages
/// sees every row that existed when it started exactly once, whatever is added or changes status
/// meanwhile; rows created during the walk sort before the cursor and are not in later pages.
/// Encoded as base64url of version, list, scope (the subscription of a delivery list) and position;
/// not secret (it only points into the caller's own rows) but bound to its list.
/// </summary>
/// <param name="List">Which list issued it.</param>
/// <param name="Scope">The subscription of a delivery list; <see cref="Guid.Empty"/> for the subscription list.</param>
/// <param name="CreatedAt">The <c>created_at</c> of the last row returned (UTC, microseconds: the database's precision).</param>
/// <param name="Id">The <c>id</c> of the last row returned.</param>
public sealed record PageCursor(PageCursor.Lists List, Guid Scope, DateTimeOffset CreatedAt, Guid Id)
{
    /// <summary>The lists that page by cursor.</summary>
    public enum Lists : byte
    {
        /// <summary><c>GET /api/webhooks</c>.</summary>
        Subscriptions = 1,

        /// <summary><c>GET /api/webhooks/{id}/deliveries</c>.</summary>
        Deliveries = 2,

        /// <summary><c>GET /api/operator/deliveries</c> (the operator's search).</summary>
        OperatorDeliveries = 3,

        /// <summary><c>GET /api/operator/webhooks</c> (the operator's subscription search).</summary>
        OperatorWebhooks = 4,

        /// <summary><c>GET /api/operator/audit</c> (the operator audit trail).</summary>
        OperatorAudit = 5,
    }

    private const byte Version = 1;
    private const int Length = 1 + 1 + 16 + 8 + 16;

    /// <summary>The cursor as sent to clients (base64url, no padding; 56 characters).</summary>
    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[Length];
        bytes[0] = Version;
        bytes[1] = (byte)List;
        Scope.TryWriteBytes(bytes[2..18]);
        BinaryPrimitives.WriteInt64BigEndian(bytes[18..26], (CreatedAt.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10);
        Id.TryWriteBytes(bytes[26..42]);
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    /// <summary>Reads a cursor this service issued for <paramref name="list"/> and <paramref name="scope"/>; null for anything else.</summary>
    public static PageCursor? Decode(string text, Lists list, Guid scope)
    {
        if (text.Length is 0 or > 64) return null;
        var base64 = text.Replace('-', '+').Replace('_', '/');
        base64 = base64.PadRight(base64.Length + (4 - base64.Length % 4) % 4, '=');
        Span<byte> bytes = stackalloc byte[48];
        if (!Convert.TryFromBase64String(base64, bytes, out var written) || written != Length) return null;
        if (bytes[0] != Version || bytes[1] != (byte)list || new Guid(bytes[2..18]) != scope) return null;
        var micros = BinaryPrimitives.ReadInt64BigEndian(bytes[18..26]);
        if (micros < (DateTimeOffset.MinValue.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10
            || micros > (DateTimeOffset.MaxValue.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10) return null;
        return new PageCursor(list, scope, DateTimeOffset.UnixEpoch.AddTicks(micros * 10), new Guid(bytes[26..42]));
    }
}
