using System.Collections.Concurrent;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// Subscriptions the dispatcher turns off by itself, and the <see cref="WebhookSubscriptionDisabled"/>
/// it publishes. Each test runs a dispatcher of its own (own virtual host) with a short streak
/// rule: no days, three failed deliveries. Every dispatcher's reconciler announces any pending
/// notice of the shared database on its own virtual host, so a test waits for its own notice
/// (others left by other tests come too), and the tests do not run side by side (they took each
/// other's notices).
/// </summary>
[NonParallelizable]
public sealed class AutoDisableTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static Task<IsolatedDispatcher> StartAsync() => IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
    {
        ["Delivery:AllowPrivateNetworks"] = "true",
        ["AutoDisable:AfterDays"] = "0",
        ["AutoDisable:MinFailures"] = "3",
        ["Reconciler:IntervalSeconds"] = "1",
    });

    /// <summary>Listens on the instance's bus for disable notices, as a Notely service would.</summary>
    private static async Task<ConcurrentQueue<WebhookSubscriptionDisabled>> ListenAsync(IsolatedDispatcher dispatcher)
    {
        var notices = new ConcurrentQueue<WebhookSubscriptionDisabled>();
        var handle = dispatcher.Services.GetRequiredService<IBus>().ConnectReceiveEndpoint("test-disabled-" + Guid.NewGuid().ToString("N"), e =>
        {
            if (e is IRabbitMqReceiveEndpointConfigurator rabbit) rabbit.AutoDelete = true;
            e.Handler<WebhookSubscriptionDisabled>(context =>
            {
                notices.Enqueue(context.Message);
                return Task.CompletedTask;
            });
        });
        await handle.Ready;
        return notices;
    }

    [Test]
    public async Task A_subscription_failing_past_the_threshold_is_disabled_with_a_reason_announced_and_after_re_enabling_a_500_is_retried()
    {
        await using var dispatcher = await StartAsync();
        var notices = await ListenAsync(dispatcher);
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        using var client = dispatcher.Client(user);
        var id = (await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 1)).Id();

        for (var i = 0; i < 3; i++) await dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync())["is_active"]!.GetValue<bool>() == false, Patience), Is.True);
        var disabled = await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync();
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(notices.Any(n => n.SubscriptionId == id)), Patience), Is.True, "the notice was published");
        var notice = notices.Single(n => n.SubscriptionId == id);
        Assert.Multiple(() =>
        {
            Assert.That(disabled["disabled_reason"]!.GetValue<string>(), Is.EqualTo("failing"));
            Assert.That(disabled["disabled_at"], Is.Not.Null);
            Assert.That(receiver.Requests, Has.Count.EqualTo(6), "three deliveries, two attempts each");
            Assert.That(notice.Reason, Is.EqualTo("failing"));
            Assert.That(notice.UserId, Is.EqualTo(user));
            Assert.That(notice.Url, Is.EqualTo(receiver.Url));
            Assert.That(notice.FailuresSinceSuccess, Is.EqualTo(3));
            Assert.That(notice.FailingSince, Is.Not.Null);
        });

        var enabled = await client.PatchJsonAsync($"/api/webhooks/{id}", """{"is_active": true}""");
        var enabledBody = await enabled.JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That((int)enabled.StatusCode, Is.EqualTo(200));
            Assert.That(enabledBody["is_active"]!.GetValue<bool>(), Is.True);
            Assert.That(enabledBody["disabled_reason"], Is.Null);
        });
        // After re-enabling, at a receiver that fails the first POST and then answers 200.
        var before = receiver.Requests.Count;
        var firstAfter = 0;
        await using var second = await TestReceiver.StartAsync((n, c) =>
        {
            c.Response.StatusCode = Interlocked.Increment(ref firstAfter) == 1 ? 500 : 200;
            return Task.CompletedTask;
        });
        Assert.That((int)(await client.PatchJsonAsync($"/api/webhooks/{id}", $$"""{"url": "{{second.Url}}"}""")).StatusCode, Is.EqualTo(200));

        await dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await second.WaitForAsync(2, Patience), Is.True, "the 500 was retried");
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(id)).Any(d => d.Status == WebhookDispatcher.Deliveries.DeliveryStatus.Success), Patience), Is.True);
        var after = await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(after["is_active"]!.GetValue<bool>(), Is.True, "a single failure after re-enabling does not disable it again");
            Assert.That(receiver.Requests, Has.Count.EqualTo(before));
        });
    }

    [Test]
    public async Task Gone_disables_the_subscription_with_its_own_reason_and_is_announced()
    {
        await using var dispatcher = await StartAsync();
        var notices = await ListenAsync(dispatcher);
        await using var receiver = await TestReceiver.AnsweringAsync(410);
        var user = Events.NewUser();
        using var client = dispatcher.Client(user);
        var id = (await client.CreateAsync(receiver.Url, ["email.received"])).Id();

        await dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(notices.Any(n => n.SubscriptionId == id)), Patience), Is.True);
        var disabled = await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(notices.Single(n => n.SubscriptionId == id).Reason, Is.EqualTo("endpoint_gone"));
            Assert.That(disabled["is_active"]!.GetValue<bool>(), Is.False);
            Assert.That(disabled["disabled_reason"]!.GetValue<string>(), Is.EqualTo("endpoint_gone"));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task Turning_a_subscription_off_through_the_API_says_the_owner_did_and_announces_nothing()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var id = (await client.CreateAsync("https://hooks.example.com/off", ["email.received"])).Id();

        var off = await (await client.PatchJsonAsync($"/api/webhooks/{id}", """{"is_active": false}""")).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(off["disabled_reason"]!.GetValue<string>(), Is.EqualTo("owner"));
            Assert.That(off["disabled_at"], Is.Not.Null);
        });
        var stored = await Dispatcher.QueryAsync(db => Task.FromResult(db.Subscriptions.Single(s => s.Id == id)));
        Assert.That(stored.DisabledNoticePending, Is.False);
    }
}
