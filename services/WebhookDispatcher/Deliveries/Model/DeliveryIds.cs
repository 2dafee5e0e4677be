namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Delivery ids are UUID version 7 (RFC 9562 §5.7): their first 48 bits are the creation time in
/// Unix milliseconds, so ids sort by creation and pick their day partition of
/// <c>webhook_deliveries</c> by themselves.
/// </summary>
public static class DeliveryIds
{
    /// <summary>The smallest version 7 id of the millisecond of <paramref name="time"/>: every id made at or after it is not smaller.</summary>
    public static Guid Floor(DateTimeOffset time)
    {
        Span<byte> bytes = stackalloc byte[16];
        var ms = time.ToUnixTimeMilliseconds();
        for (var i = 0; i < 6; i++) bytes[i] = (byte)(ms >> (8 * (5 - i)));
        bytes[6] = 0x70; // version 7
        bytes[8] = 0x80; // variant 10
        return new Guid(bytes, bigEndian: true);
    }

    /// <summary>The creation time a version 7 id carries (millisecond precision).</summary>
    /// <exception cref="ArgumentException"><paramref name="id"/> is not version 7.</exception>
    public static DateTimeOffset CreatedAt(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        id.TryWriteBytes(bytes, bigEndian: true, out _);
        if (bytes[6] >> 4 != 7) throw new ArgumentException("Not a version 7 UUID.", nameof(id));
        long ms = 0;
        for (var i = 0; i < 6; i++) ms = (ms << 8) | bytes[i];
        return DateTimeOffset.FromUnixTimeMilliseconds(ms);
    }
}
