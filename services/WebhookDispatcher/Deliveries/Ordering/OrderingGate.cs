namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The claim's gate for ordered deliveries (decision 0014), as SQL conditions over a delivery
/// <c>d</c> and its subscription <c>s</c>, so it holds across replicas: one place for the rule
/// that the claim (<see cref="LaneStore.ClaimAsync"/>) and the reconciler
/// (<see cref="RecoveryStore.ReclaimOverdueAsync"/>) apply.
/// </summary>
public static class OrderingGate
{
    /// <summary>
    /// True for a delivery that is not ordered now (no key, or its subscription's ordering is
    /// <c>none</c>), or that is the head of its key: no unfinished delivery (pending or retrying,
    /// in flight or waiting for a broker-held retry included) of the same subscription and key
    /// with an earlier (occurred_at, id), and none of the key in flight at all (an earlier event
    /// stored after the settle time of a later one that started waits until that one's attempt
    /// ended, so two deliveries of a key are never in flight together). A batch (decision 0015)
    /// carries events of many keys: no single delivery starts while an earlier batch of its
    /// subscription is unfinished or any batch of it is in flight, and a batch starts only when no
    /// earlier delivery of its subscription, of any key, is unfinished and none is in flight (so a
    /// subscription whose batching was turned on or off keeps each key's order across the change).
    /// Needs <c>s</c> joined on <c>d.subscription_id</c>.
    /// </summary>
    public static readonly string IsHead = IsHeadOf("s.ordering");

    /// <summary><see cref="IsHead"/> with the subscription's ordering given by the SQL expression <paramref name="ordering"/>.</summary>
    public static string IsHeadOf(string ordering) => $"""
        (d.ordering_key IS NULL OR {ordering} = 'none' OR (NOT EXISTS (
            SELECT 1 FROM webhook_deliveries p
            WHERE p.subscription_id = d.subscription_id AND p.ordering_key = d.ordering_key AND p.status IN ('pending', 'retrying')
              AND ((p.occurred_at, p.id) < (d.occurred_at, d.id) OR p.in_flight))
         AND NOT EXISTS (
            SELECT 1 FROM webhook_deliveries p
            WHERE p.subscription_id = d.subscription_id AND p.batch_size IS NOT NULL AND p.ordering_key IS NOT NULL
              AND p.status IN ('pending', 'retrying') AND p.id <> d.id
              AND ((p.occurred_at, p.id) < (d.occurred_at, d.id) OR p.in_flight))
         AND (d.batch_size IS NULL OR NOT EXISTS (
            SELECT 1 FROM webhook_deliveries p
            WHERE p.subscription_id = d.subscription_id AND p.ordering_key IS NOT NULL AND p.status IN ('pending', 'retrying') AND p.id <> d.id
              AND ((p.occurred_at, p.id) < (d.occurred_at, d.id) OR p.in_flight)))))
        """;

    /// <summary>
    /// <see cref="IsHead"/>, and an ordered delivery must also have been stored for the settle
    /// time, given in seconds by the parameter <paramref name="settleParameter"/> (e.g. <c>$6</c>).
    /// A batch (<c>batch_size</c> set) needs no settle time: its members settled before it was
    /// formed (<see cref="BatchStore.CloseAsync"/>).
    /// </summary>
    public static string MayStart(string settleParameter) => $"""
        ({IsHead} AND (d.ordering_key IS NULL OR s.ordering = 'none' OR d.batch_size IS NOT NULL
                       OR d.created_at <= now() - make_interval(secs => {settleParameter})))
        """;

    /// <summary>
    /// Of deliveries a claim refused, those refused (perhaps among other reasons) for the settle
    /// time: ordered, unfinished, not in flight and stored less than the settle time ago; with the
    /// seconds left. Parameters: <c>$1</c> the ids, <c>$2</c> the settle time in seconds.
    /// </summary>
    public const string Unsettled = """
        SELECT d.id, d.subscription_id, GREATEST(0, extract(epoch FROM d.created_at + make_interval(secs => $2) - now()))::float8
        FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
        WHERE d.id = ANY ($1) AND d.ordering_key IS NOT NULL AND d.batch_size IS NULL AND s.ordering <> 'none' AND d.status IN ('pending', 'retrying')
          AND NOT d.in_flight
          AND d.created_at > now() - make_interval(secs => $2)
        """;
}
