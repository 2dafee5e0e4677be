using System.Collections.Concurrent;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

[Parallelizable(ParallelScope.All)]
public sealed class StatisticsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Test]
    public async Task Statistics_equal_the_delivery_history_after_concurrent_mixed_outcomes()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        await using var ok = await TestReceiver.AnsweringAsync(200);
        var seen = new ConcurrentDictionary<string, byte>();
        await using var flaky = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = seen.TryAdd(c.Request.Headers["X-Webhook-Delivery"].ToString(), 0) ? 500 : 200;
            return Task.CompletedTask;
        });
        var failingAnswer = 500;
        await using var failing = await TestReceiver.StartAsync((_, c) =>
        {
            c.Response.StatusCode = Volatile.Read(ref failingAnswer);
            return Task.CompletedTask;
        });
        await using var gone = await TestReceiver.AnsweringAsync(410);
        var succeeding = (await client.CreateAsync(ok.Url, ["email.received"])).Id();
        var retried = (await client.CreateAsync(flaky.Url, ["email.received"], retryCount: 2)).Id();
        var failed = (await client.CreateAsync(failing.Url, ["email.received"], retryCount: 1)).Id();
        var disabled = (await client.CreateAsync(gone.Url, ["email.received"])).Id();

        await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Dispatcher.PublishAsync(Events.EmailReceived(user))));

        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(succeeding)).Count(d => d.Status == DeliveryStatus.Success) == 6 &&
            (await Dispatcher.DeliveriesAsync(retried)).Count(d => d.Status == DeliveryStatus.Success) == 6 &&
            (await Dispatcher.DeliveriesAsync(failed)).Count(d => d.Status == DeliveryStatus.Failed) == 6 &&
            (await Dispatcher.DeliveriesAsync(disabled)).All(d => d.Status is DeliveryStatus.Failed or DeliveryStatus.Cancelled), Patience), Is.True);

        // A manual retry of a failed delivery that then succeeds moves it from failed to success.
        Volatile.Write(ref failingAnswer, 200);
        var again = (await Dispatcher.DeliveriesAsync(failed))[0].Id;
        Assert.That((int)(await client.PostAsync($"/api/webhooks/{failed}/deliveries/{again}/retry", null)).StatusCode, Is.EqualTo(202));
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(failed)).Single(d => d.Id == again).Status == DeliveryStatus.Success, Patience), Is.True);

        foreach (var (id, name) in new[] { (succeeding, "success"), (retried, "retried"), (failed, "failed then one retried by hand"), (disabled, "410") })
        {
            var statistics = (await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync())["statistics"]!;
            var history = (await (await client.GetAsync($"/api/webhooks/{id}/deliveries?limit=100")).JsonAsync())["data"]!.AsArray()
                .Select(d => d!["status"]!.GetValue<string>()).ToList();
            var successes = history.Count(s => s == DeliveryStatus.Success);
            var failures = history.Count(s => s == DeliveryStatus.Failed);
            Assert.Multiple(() =>
            {
                Assert.That(statistics["successful_deliveries"]!.GetValue<long>(), Is.EqualTo(successes), name);
                Assert.That(statistics["failed_deliveries"]!.GetValue<long>(), Is.EqualTo(failures), name);
                Assert.That(statistics["total_deliveries"]!.GetValue<long>(), Is.EqualTo(successes + failures), name);
            });
        }
        var disabledNow = await (await client.GetAsync($"/api/webhooks/{disabled}")).JsonAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(disabledNow["is_active"]!.GetValue<bool>(), Is.False, "410 disabled it");
            Assert.That((await Dispatcher.DeliveriesAsync(failed)).Count(d => d.Status == DeliveryStatus.Failed), Is.EqualTo(5));
            Assert.That(disabledNow["statistics"]!["failed_deliveries"]!.GetValue<long>(), Is.GreaterThanOrEqualTo(1));
        });
    }
}
