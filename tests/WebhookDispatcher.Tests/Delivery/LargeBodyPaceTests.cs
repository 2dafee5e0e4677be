using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Delivery:LargeBodyBytesPerSecondPerUser: one user's large bodies (64 KiB or more) are sent at
/// most at that pace from a process, while another user's small deliveries are not held by them.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class LargeBodyPaceTests
{
    [Test]
    public async Task A_users_burst_of_large_bodies_is_spread_at_its_pace_and_another_users_small_event_is_not_held()
    {
        // 256 KiB/s, a bucket of one body at the cap (256 KiB): 8 bodies of 200 KB (1.6 MB) take
        // at least (1.6 MB - 256 KiB) / 256 KiB/s, about 5 s, however fast the machine is.
        await using var dispatcher = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Delivery:LargeBodyBytesPerSecondPerUser"] = "262144",
        });
        var arrivals = new ConcurrentQueue<(string Path, long Ticks)>();
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            await c.Request.Body.CopyToAsync(Stream.Null);
            arrivals.Enqueue((c.Request.Path.Value!, Stopwatch.GetTimestamp()));
            c.Response.StatusCode = StatusCodes.Status200OK;
        });
        var tenant = Events.NewUser();
        var other = Events.NewUser();
        await Dispatcher.SubscribeAsync(tenant, $"{receiver.Url}/large", ["email.received"]);
        await Dispatcher.SubscribeAsync(other, $"{receiver.Url}/small", ["email.received"]);

        for (var i = 0; i < 8; i++)
            await dispatcher.PublishAsync(Events.EmailReceived(tenant) with { BodyPreview = new string('x', 200_000) });
        // The first large body arrives (the bucket starts full), then the other user's small event.
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(arrivals.Any(a => a.Path == "/large")), TimeSpan.FromSeconds(60)), Is.True);
        await dispatcher.PublishAsync(Events.EmailReceived(other));

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(arrivals.Count(a => a.Path == "/large") == 8), TimeSpan.FromSeconds(120)), Is.True,
            "every large body arrives");
        var large = arrivals.Where(a => a.Path == "/large").Select(a => a.Ticks).Order().ToList();
        var small = arrivals.Single(a => a.Path == "/small").Ticks;
        Assert.Multiple(() =>
        {
            Assert.That(Stopwatch.GetElapsedTime(large[0], large[^1]), Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(4)),
                "8 × 200 KB at 256 KiB/s: spread over about 5 s");
            Assert.That(small, Is.LessThan(large[^1]), "the other user's small event did not wait for the paced ones");
        });
    }
}
