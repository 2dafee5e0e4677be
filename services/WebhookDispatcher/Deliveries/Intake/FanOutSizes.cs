using Microsoft.Extensions.Caching.Memory;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// Knows which users' events fan out to many subscriptions, so the <see cref="FanOutBatcher"/>
/// stores them in statements of their own: an event of a user with hundreds of subscriptions
/// writes hundreds of rows, and other users' events in the same statement would wait for all of
/// them (issue 14: a tenant's burst must not slow the others). Each user's count of active
/// subscriptions is read from the database when first needed, for every unknown user of a batch
/// in one query, and kept for <see cref="KnownFor"/>; a count that grew meanwhile only means that
/// user's events share a statement a little longer.
/// </summary>
public sealed class FanOutSizes(FanOutStore store) : IDisposable
{
    /// <summary>A user with at least this many active subscriptions has events stored apart (the default limit per user is 200).</summary>
    public const int ManySubscriptions = 50;

    /// <summary>How long a user's count is kept before it is read again.</summary>
    public static readonly TimeSpan KnownFor = TimeSpan.FromSeconds(30);

    /// <summary>Users whose counts are kept at most (one small entry each); when full, a new user's count is not kept (read again with its next batch) until the cache compacts.</summary>
    public const int MaxUsersKnown = 100_000;

    private readonly MemoryCache _counts = new(new MemoryCacheOptions { SizeLimit = MaxUsersKnown });

    /// <summary>
    /// The users among <paramref name="userIds"/> with at least <see cref="ManySubscriptions"/>
    /// active subscriptions, with their counts. Unknown users are looked up together in one query.
    /// </summary>
    /// <exception cref="Npgsql.NpgsqlException">The database failed.</exception>
    public async Task<IReadOnlyDictionary<string, int>> WithManyAsync(IEnumerable<string> userIds, CancellationToken cancellationToken)
    {
        Dictionary<string, int>? many = null;
        List<string>? unknown = null;
        foreach (var user in userIds.Distinct())
        {
            // A user id PostgreSQL cannot hold (a NUL) has no subscriptions; its event is parked
            // by the fan-out's own statement. Sent here, it would fail this lookup instead.
            if (user.Contains('\0', StringComparison.Ordinal)) continue;
            if (!_counts.TryGetValue(user, out int count)) (unknown ??= []).Add(user);
            else if (count >= ManySubscriptions) (many ??= [])[user] = count;
        }
        if (unknown is not null)
        {
            var counts = await store.CountSubscriptionsAsync(unknown, cancellationToken);
            foreach (var user in unknown)
            {
                var count = counts.GetValueOrDefault(user);
                _counts.Set(user, count, new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = KnownFor });
                if (count >= ManySubscriptions) (many ??= [])[user] = count;
            }
        }
        return many ?? Empty;
    }

    private static readonly Dictionary<string, int> Empty = [];

    /// <inheritdoc />
    public void Dispose() => _counts.Dispose();
}
