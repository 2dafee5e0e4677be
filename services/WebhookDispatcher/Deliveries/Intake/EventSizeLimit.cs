using System.Globalization;
using System.Text;
using WebhookDispatcher.Messaging;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The event payload cap (<see cref="DeliveryOptions.MaxEventBytes"/>), checked twice on the
/// <c>webhook-fan-out</c> endpoint:
/// <list type="number">
/// <item>on the message as received, before it is read: a body over
/// <see cref="MaxReceivedBytes"/> is parked unread (<see cref="ReceivedReason"/>), so a 20 MB event
/// is never deserialized, never copied into delivery rows, and holds nothing up;</item>
/// <item>on the payload built from it, exactly: the UTF-8 bytes of the JSON body subscribers would
/// receive, over the cap, park the event (<see cref="PayloadReason"/>) before any delivery is stored.</item>
/// </list>
/// The second check is the cap subscribers can rely on; the first bounds what a hostile or broken
/// publisher costs. The message is not the payload: it is indented, wraps the event in an envelope,
/// names fields in camelCase, and may escape text the payload writes as it is (a Python publisher's
/// default <c>ensure_ascii</c> turns "é" into "\u00e9"), so the first check leaves room
/// (<see cref="ReceivedBytesFactor"/>, <see cref="EnvelopeAllowanceBytes"/>).
/// </summary>
public static class EventSizeLimit
{
    /// <summary>The default cap: 262,144 bytes (256 KiB).</summary>
    public const int DefaultMaxEventBytes = 256 * 1024;

    /// <summary>The smallest cap a setting may give: 1,024 bytes.</summary>
    public const int MinMaxEventBytes = 1024;

    /// <summary>The largest cap a setting may give: 4,194,304 bytes (4 MiB); larger content belongs in storage, with a link in the event.</summary>
    public const int MaxMaxEventBytes = 4 * 1024 * 1024;

    /// <summary>How many times the cap a message may have as received before it is parked unread: 4.</summary>
    public const int ReceivedBytesFactor = 4;

    /// <summary>Bytes allowed besides for the envelope (message id, types, headers, host): 65,536.</summary>
    public const int EnvelopeAllowanceBytes = 64 * 1024;

    /// <summary>The setting's path, as reasons name it.</summary>
    public const string Setting = $"{DeliveryOptions.Section}:{nameof(DeliveryOptions.MaxEventBytes)}";

    /// <summary>
    /// The most bytes a message may have as received for a cap of <paramref name="maxEventBytes"/>:
    /// <see cref="ReceivedBytesFactor"/> × the cap + <see cref="EnvelopeAllowanceBytes"/>.
    /// </summary>
    public static long MaxReceivedBytes(int maxEventBytes) => (long)ReceivedBytesFactor * maxEventBytes + EnvelopeAllowanceBytes;

    /// <summary>The reason of an event parked unread: its message is <paramref name="receivedBytes"/> long.</summary>
    public static string ReceivedReason(long receivedBytes, int maxEventBytes) =>
        $"The event's message is {Bytes(receivedBytes)} bytes as received; the cap is {Bytes(maxEventBytes)} bytes of payload ({Setting}), " +
        $"and a message over {Bytes(MaxReceivedBytes(maxEventBytes))} bytes ({ReceivedBytesFactor} × the cap + {EnvelopeAllowanceBytes / 1024} KiB for the envelope) " +
        "is parked without being read. Nothing was delivered for it; send large content as a link.";

    /// <summary>The reason of an event whose payload is <paramref name="payloadBytes"/> UTF-8 bytes.</summary>
    public static string PayloadReason(long payloadBytes, int maxEventBytes) =>
        $"The event's payload is {Bytes(payloadBytes)} bytes of JSON; the cap is {Bytes(maxEventBytes)} bytes ({Setting}). " +
        "Nothing was delivered for it; send large content as a link.";

    /// <summary>Throws when <paramref name="payload"/> is more than <paramref name="maxEventBytes"/> bytes in UTF-8.</summary>
    /// <exception cref="EventTooLargeException">The payload is over the cap.</exception>
    public static void EnsureWithinCap(string payload, int maxEventBytes)
    {
        var bytes = Encoding.UTF8.GetByteCount(payload);
        if (bytes > maxEventBytes) throw new EventTooLargeException(PayloadReason(bytes, maxEventBytes));
    }

    private static string Bytes(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}

/// <summary>
/// An event over the payload cap (<see cref="EventSizeLimit"/>): parked in
/// <c>webhook-fan-out_error</c> at once, with the size and the cap as its reason.
/// </summary>
public sealed class EventTooLargeException(string reason) : UnprocessableMessageException(reason);
