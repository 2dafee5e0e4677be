namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Attempts in flight per destination (<see cref="EndpointLane.Destination"/>: one user's
/// subscriptions to one host), so many subscriptions of one tenant to one host cannot add up to a
/// flood (<see cref="DeliveryOptions.MaxInFlightPerHost"/>); the same count keyed by user holds
/// <see cref="DeliveryOptions.MaxInFlightPerUser"/>. Pure bookkeeping for the
/// <see cref="DeliveryScheduler"/>'s loop: no I/O, no locks; an entry lives while something is in flight.
/// </summary>
public sealed class DestinationLimits
{
    private readonly Dictionary<string, int> _inFlight = [];

    /// <summary>Destinations with attempts in flight.</summary>
    public int Count => _inFlight.Count;

    /// <summary>Attempts in flight to <paramref name="destination"/>.</summary>
    public int InFlight(string destination) => _inFlight.GetValueOrDefault(destination);

    /// <summary>How many more may start to <paramref name="destination"/> under <paramref name="cap"/> (0 or more).</summary>
    public int Room(string destination, int cap) => Math.Max(0, cap - InFlight(destination));

    /// <summary>Counts <paramref name="count"/> attempts starting to <paramref name="destination"/>.</summary>
    public void Add(string destination, int count)
    {
        if (count <= 0) return;
        _inFlight[destination] = InFlight(destination) + count;
    }

    /// <summary>Counts one attempt to <paramref name="destination"/> as ended (or never started).</summary>
    public void Release(string destination)
    {
        var left = InFlight(destination) - 1;
        if (left > 0) _inFlight[destination] = left;
        else _inFlight.Remove(destination);
    }
}
