namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Where an event's payload is stored (docs/decisions/0009): a payload of at least
/// <see cref="SeparateFromChars"/> characters is stored once per event, in
/// <c>webhook_event_payloads</c> (partitioned by day like the deliveries, dropped with them), and
/// its deliveries point at it (<c>payload_id</c>, <c>payload</c> null); a smaller one is copied
/// into each delivery row, which saves the small events, almost all of them, a second row.
/// </summary>
public static class EventPayloads
{
    /// <summary>
    /// Payloads of this many characters (UTF-16 code units, so at least as many UTF-8 bytes) or
    /// more are stored once per event.
    /// </summary>
    public const int SeparateFromChars = 8192;

    /// <summary>
    /// Payloads of this many characters or bytes or more are large: a tenant's events near the
    /// cap. Each stage keeps them from holding up small ones: the fan-out stores them in a
    /// statement of their own, and attempts sign them off the scheduler's loop, one at a time.
    /// </summary>
    public const int Large = 64 * 1024;

    /// <summary>Whether <paramref name="payload"/> is stored once per event rather than in each delivery row.</summary>
    public static bool StoredOncePerEvent(string payload) => payload.Length >= SeparateFromChars;
}
