namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The values of a subscription's <c>ordering</c> (decision 0014): whether and by what its
/// deliveries wait for one another.
/// </summary>
public static class SubscriptionOrdering
{
    /// <summary>Deliveries are independent (the default): any may start whenever its lane allows.</summary>
    public const string None = "none";

    /// <summary>Deliveries with the same ordering key (<see cref="OrderingKeys"/>) start one at a time, in publish order.</summary>
    public const string PerKey = "per_key";

    /// <summary>One key for the whole subscription: its deliveries start one at a time, in publish order.</summary>
    public const string Strict = "strict";

    /// <summary>Every value, in the order the API lists them.</summary>
    public static readonly IReadOnlyList<string> All = [None, PerKey, Strict];

    /// <summary>The key stored on a delivery of a subscription with <paramref name="ordering"/> for an event whose key is <paramref name="eventKey"/>:
    /// null under <see cref="None"/>, the empty string under <see cref="Strict"/>, the event's key under <see cref="PerKey"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ordering"/> is not one of <see cref="All"/>.</exception>
    public static string? StoredKey(string ordering, string eventKey) => ordering switch
    {
        None => null,
        Strict => "",
        PerKey => eventKey,
        _ => throw new ArgumentOutOfRangeException(nameof(ordering), ordering, "Not an ordering."),
    };
}
