using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Npgsql;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// The fan-out's group commit: events handed in by the <see cref="FanOutConsumer{TEvent}"/>s while
/// one statement runs go into the next, so one insert and one commit serve up to
/// <see cref="DeliveryOptions.FanOutBatchSize"/> events (a batch of fewer than
/// <see cref="ChannelBatches.LingerBelow"/> waits <see cref="Linger"/> for more). The new
/// deliveries go straight to the <see cref="DeliveryScheduler"/>, with no broker hop. A statement
/// that runs longer than <see cref="StallAfter"/> (one tenant's events to very many
/// subscriptions) gets company: the events behind it go into statements of their own beside it,
/// up to <see cref="MaxConcurrentStatements"/>, so they keep their latency. Events known to write
/// much, large ones (<see cref="LargePayloadChars"/>) and those of users with many subscriptions
/// (<see cref="FanOutSizes"/>), go in short statements of their own, one user each, beside the
/// others (<see cref="MaxConcurrentApart"/>). Deliveries of batched subscriptions go to the
/// <see cref="BatchFormer"/> instead of the scheduler.
/// </summary>
public sealed class FanOutBatcher(FanOutStore store, FanOutSizes sizes, DeliveryScheduler scheduler, InsertClaims claims, DispatcherIdentity dispatcher,
    OrderingHandOff ordering, BatchFormer batches, IOptions<DeliveryOptions> options, TimeProvider time)
    : BackgroundService
{
    /// <summary>How long a small batch waits for more events; the event waits for its commit, so this adds to its latency.</summary>
    public static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(5);

    /// <summary>Fan-out statements of small events running at once at most: a second starts only beside one running longer than <see cref="StallAfter"/>.</summary>
    public const int MaxConcurrentStatements = 4;

    /// <summary>
    /// Statements of events stored apart (large payloads, users with many subscriptions) running
    /// at once, besides the small ones: one, so such writes take at most one database backend
    /// from the others.
    /// </summary>
    public const int MaxConcurrentApart = 1;

    /// <summary>Deliveries a statement of events stored apart writes at most (by its users' subscription counts; one event at least).</summary>
    public const int ApartRows = 1000;

    /// <summary>Characters of payload a statement of events stored apart carries at most (one event at least).</summary>
    public const int ApartChars = 1 << 20;

    /// <summary>How long a fan-out statement runs before the next batch goes into a statement of its own beside it.</summary>
    public static readonly TimeSpan StallAfter = TimeSpan.FromMilliseconds(50);

    /// <summary>A payload this long (characters) or longer is a large event, stored in a statement apart from the others.</summary>
    public const int LargePayloadChars = EventPayloads.Large;

    private readonly Channel<PendingFanOut> _fanOut = Channel.CreateUnbounded<PendingFanOut>(new() { SingleReader = true });
    private readonly SemaphoreSlim _statements = new(MaxConcurrentStatements);
    private readonly SemaphoreSlim _apart = new(MaxConcurrentApart);

    private sealed record PendingFanOut(FanOutEvent Event, TaskCompletionSource Done);

    /// <summary>
    /// Stores one delivery per matching subscription of <paramref name="evt"/> (batched with
    /// other events arriving meanwhile: one statement per batch) and queues them for attempts.
    /// Completes once the rows are committed, so the caller may acknowledge the event.
    /// </summary>
    /// <exception cref="Npgsql.NpgsqlException">The database failed; nothing was stored for this event.</exception>
    public Task FanOutAsync(FanOutEvent evt)
    {
        // Continuations run synchronously, in the one work item that completes the whole batch
        // (CompleteBatch): one thread wake-up per batch instead of one per event.
        var pending = new PendingFanOut(evt, new TaskCompletionSource());
        if (_fanOut.Writer.TryWrite(pending))
            return pending.Done.Task;
        // The batch writer has stopped (the host is stopping, consumers still run): store this
        // event alone; its deliveries (batch members too: the sweep) wait in the database for a running replica.
        return store.FanOutAsync([evt], time.GetUtcNow(), CancellationToken.None);
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Runs until the channel is completed (StopAsync), not until the token: every event
        // handed in before the stop gets its statement.
        await Task.Yield();
        var running = new List<Task>();
        while (await _fanOut.Reader.WaitToReadAsync(CancellationToken.None))
        {
            await _statements.WaitAsync();
            var batch = new List<PendingFanOut>();
            await ChannelBatches.GatherAsync(_fanOut.Reader, batch, options.Value.FanOutBatchSize, Linger);
            running.RemoveAll(t => t.IsCompleted);
            // Events that write much (payloads near the cap, or a user with many subscriptions)
            // are stored apart, so the other events of the batch do not wait for their rows.
            var many = await ManySubscriptionsAsync(batch);
            var apart = batch.FindAll(p => p.Event.Payload.Length >= LargePayloadChars || many.ContainsKey(p.Event.UserId));
            if (apart.Count > 0)
            {
                batch = batch.Except(apart).ToList();
                foreach (var part in ApartStatements(apart, many))
                    running.Add(StoreApartAsync(part));
            }
            if (batch.Count == 0)
            {
                _statements.Release();
                continue;
            }
            var statement = StoreAsync(batch, _statements, claimAtInsert: true);
            running.Add(statement);
            // One statement at a time while they are quick (the next batch grows meanwhile: group
            // commit); one that takes longer does not hold up the events behind it, which go into
            // a statement of their own beside it.
            await Task.WhenAny(statement, Task.Delay(StallAfter));
        }
        await Task.WhenAll(running);
    }

    /// <summary>The users of the batch with many subscriptions, with their counts; none when the database cannot say (the statement will tell).</summary>
    private async Task<IReadOnlyDictionary<string, int>> ManySubscriptionsAsync(List<PendingFanOut> batch)
    {
        try
        {
            return await sizes.WithManyAsync(batch.Select(p => p.Event.UserId), CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            store.OnFailure(ex);
            return new Dictionary<string, int>();
        }
    }

    /// <summary>
    /// Splits events stored apart into statements of one user each, of at most about
    /// <see cref="ApartRows"/> deliveries (by the user's subscription count) and
    /// <see cref="ApartChars"/> characters of payload, one event at least: short statements, so
    /// one user's burst takes turns with another's instead of holding the slot for seconds.
    /// </summary>
    private static IEnumerable<List<PendingFanOut>> ApartStatements(List<PendingFanOut> apart, IReadOnlyDictionary<string, int> many)
    {
        foreach (var user in apart.GroupBy(p => p.Event.UserId))
        {
            var rowsEach = Math.Max(1, many.GetValueOrDefault(user.Key, 1));
            var statement = new List<PendingFanOut>();
            long rows = 0, chars = 0;
            foreach (var p in user)
            {
                if (statement.Count > 0 && (rows + rowsEach > ApartRows || chars + p.Event.Payload.Length > ApartChars))
                {
                    yield return statement;
                    statement = [];
                    rows = chars = 0;
                }
                statement.Add(p);
                rows += rowsEach;
                chars += p.Event.Payload.Length;
            }
            yield return statement;
        }
    }

    /// <summary>A statement of events stored apart: it waits for a slot of its own, never for the small events' loop.</summary>
    private async Task StoreApartAsync(List<PendingFanOut> batch)
    {
        await _apart.WaitAsync();
        await StoreAsync(batch, _apart);
    }

    /// <summary>Stores one batch (one statement) and completes its consumers; never throws. Frees its statement slot in <paramref name="slots"/>.</summary>
    /// <remarks>
    /// With <paramref name="claimAtInsert"/> (small events' statements) the statement also claims
    /// the new deliveries of lanes that could start them at once (<see cref="InsertClaims"/>);
    /// events stored apart are paced and capped downstream, so theirs wait for the scheduler's claim.
    /// </remarks>
    private async Task StoreAsync(List<PendingFanOut> batch, SemaphoreSlim slots, bool claimAtInsert = false)
    {
        try
        {
            var seen = new HashSet<Guid>();
            var events = new List<FanOutEvent>();
            foreach (var p in batch)
                if (seen.Add(p.Event.EventId)) events.Add(p.Event);
            var grant = claimAtInsert ? claims.Take(events.Select(e => e.UserId)) : ClaimGrant.None;
            try
            {
                FanOutResult? stored = null;
                try
                {
                    stored = await store.FanOutAndClaimAsync(events, grant, dispatcher.Id, time.GetUtcNow().ToUniversalTime(), CancellationToken.None);
                }
                finally
                {
                    // Always handed back, so the loop publishes room again; nothing claimed when the statement failed.
                    if (!grant.IsNone) claims.Return(stored?.Claimed ?? []);
                }
                // Wakes the loop for the claimed ones too.
                HandOn(stored);
                CompleteBatch([.. batch], null);
            }
            catch (Exception ex)
            {
                store.OnFailure(ex);
                if (events.Count > 1 && !DatabaseAway(ex)) await StoreOneByOneAsync(batch);
                else CompleteBatch([.. batch], Unstorable(ex) ?? ex);
            }
        }
        finally
        {
            slots.Release();
        }
    }

    /// <summary>
    /// Hands on what a statement stored: deliveries to their lanes (<see cref="DeliveryScheduler"/>),
    /// ordered ones once they settled (<see cref="OrderingHandOff"/>, decision 0014), batch members to
    /// the <see cref="BatchFormer"/> (an ordered subscription's once they settled, decision 0015).
    /// </summary>
    private void HandOn(FanOutResult stored)
    {
        scheduler.Enqueue(stored.Work);
        var settle = TimeSpan.FromMilliseconds(options.Value.OrderingSettleMilliseconds);
        ordering.OfferAfter(stored.Settling, settle);
        if (stored.Batched.Any(m => m.Ordered))
        {
            batches.Add([.. stored.Batched.Where(m => !m.Ordered)]);
            batches.AddAfter([.. stored.Batched.Where(m => m.Ordered)], settle + OrderingHandOff.Margin);
        }
        else batches.Add(stored.Batched);
    }

    /// <summary>
    /// A batch failed for a reason that may be one event's own: each event is stored by itself,
    /// so the others are acknowledged at once instead of travelling back through the broker with
    /// it. An event the database refuses as data (SQLSTATE class 22: a NUL in its user id, say)
    /// can never be stored and is parked at once with the reason.
    /// </summary>
    private async Task StoreOneByOneAsync(List<PendingFanOut> batch)
    {
        foreach (var group in batch.GroupBy(p => p.Event.EventId))
        {
            var pending = group.ToArray();
            try
            {
                HandOn(await store.FanOutAndClaimAsync([pending[0].Event], ClaimGrant.None, Guid.Empty, time.GetUtcNow(), CancellationToken.None));
                CompleteBatch(pending, null);
            }
            catch (Exception ex)
            {
                store.OnFailure(ex);
                CompleteBatch(pending, Unstorable(ex) ?? ex);
            }
        }
    }

    /// <summary>The failure as a reason to park the event at once, when the database refused the event's data (SQLSTATE class 22); else null.</summary>
    private static Messaging.UnprocessableMessageException? Unstorable(Exception ex) =>
        ex is PostgresException { SqlState: var state } pg && state.StartsWith("22", StringComparison.Ordinal)
            ? new Messaging.UnprocessableMessageException($"The event could not be stored: the database refused its data ({state}: {pg.MessageText}).")
            : null;

    /// <summary>Whether the failure says the database is away (every statement would fail the same way), not that one event is bad.</summary>
    private static bool DatabaseAway(Exception ex) => ex switch
    {
        // Connection lost, server shutting down or out of resources: every statement fails alike.
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("57P", StringComparison.Ordinal)
                                || pg.SqlState.StartsWith("53", StringComparison.Ordinal),
        NpgsqlException => true,
        _ => false,
    };

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _fanOut.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _statements.Dispose();
        _apart.Dispose();
        base.Dispose();
    }

    /// <summary>
    /// Completes the consumers waiting on a fan-out batch (each then acknowledges its event) on a
    /// thread-pool thread, off this loop, which goes on gathering the next batch meanwhile.
    /// </summary>
    private static void CompleteBatch(PendingFanOut[] batch, Exception? failure) =>
        ThreadPool.UnsafeQueueUserWorkItem(static state =>
        {
            foreach (var p in state.Batch)
                if (state.Failure is null) p.Done.TrySetResult();
                else p.Done.TrySetException(state.Failure);
        }, (Batch: batch, Failure: failure), preferLocal: false);
}
