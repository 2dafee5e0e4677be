using System.Net;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary><c>GET /api/webhooks/stats</c> against real deliveries on the shared dispatcher.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class DeliveryStatsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Test]
    public async Task Stats_match_the_delivery_history_of_successes_a_retried_success_and_failures()
    {
        // Every subscription takes email.received, so each event makes one delivery per subscription.
        await using var ok = await TestReceiver.AnsweringAsync(200);
        await using var flaky = await TestReceiver.FailingFirstAsync(1, 500);
        await using var broken = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var succeeding = (await client.CreateAsync(ok.Url + "/a", ["email.received"])).Id();
        var retried = (await client.CreateAsync(flaky.Url + "/b", ["email.received"], retryCount: 3)).Id();
        var failingAtOnce = (await client.CreateAsync(broken.Url + "/c", ["email.received"], retryCount: 0)).Id();
        var failingAfterRetry = (await client.CreateAsync(broken.Url + "/d", ["email.received"], retryCount: 1)).Id();
        // Takes no published type: its deliveries are written below, still waiting.
        var waiting = (await client.CreateAsync(ok.Url + "/e", ["task.deleted"])).Id();
        var subscriptions = new[] { succeeding, retried, failingAtOnce, failingAfterRetry, waiting };
        // Another user's failures must not show.
        var stranger = Events.NewUser();
        using var strangerClient = TestTokens.Client(stranger);
        var strangersSubscription = (await strangerClient.CreateAsync(broken.Url + "/x", ["email.received"], retryCount: 0)).Id();

        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        await Dispatcher.PublishAsync(Events.EmailReceived(stranger));
        var now = DateTimeOffset.UtcNow;
        await AddDeliveryAsync(waiting, DeliveryStatus.Pending, now, completedAt: null);
        await AddDeliveryAsync(waiting, DeliveryStatus.Retrying, now, completedAt: null);
        // Created two days ago: in the 7d window, not in the 24h one.
        await AddDeliveryAsync(succeeding, DeliveryStatus.Success, now.AddDays(-2), completedAt: now.AddDays(-2).AddSeconds(3));

        Assert.That(await Dispatcher.EventuallyAsync(async () => await Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d =>
            subscriptions.Contains(d.SubscriptionId) && d.CreatedAt > now.AddHours(-1)
            && (d.Status == DeliveryStatus.Success || d.Status == DeliveryStatus.Failed))) == 8, Patience), Is.True, "the 8 real deliveries finished");
        Assert.That(await Dispatcher.DeliveryReachesAsync(strangersSubscription, DeliveryStatus.Failed, Patience), Is.True);
        Assert.That(flaky.Requests, Has.Count.EqualTo(3), "one of the flaky subscription's deliveries was retried");

        var day = await StatsAsync(client, "?window=24h");
        var week = await StatsAsync(client, "?window=7d");
        var strangersStats = await StatsAsync(strangerClient, "");

        var history = await Dispatcher.QueryAsync(db => db.Deliveries.AsNoTracking()
            .Where(d => subscriptions.Contains(d.SubscriptionId) && d.CreatedAt > now.AddHours(-1)).ToListAsync());
        var successes = history.Where(d => d.Status == DeliveryStatus.Success).ToList();
        var expectedAverageMs = successes.Average(d => (d.CompletedAt!.Value - d.CreatedAt).TotalMilliseconds);
        var mostFailing = day["most_failing"]!.AsArray();
        Assert.Multiple(() =>
        {
            Assert.That(history, Has.Count.EqualTo(10));
            Assert.That(Counts(day["deliveries"]!), Is.EqualTo((10L, 4L, 4L, 0L, 2L)), "total, succeeded, failed, cancelled, in progress");
            Assert.That(day["success_rate"]!.GetValue<double>(), Is.EqualTo(0.5));
            Assert.That(day["average_delivery_time_ms"]!.GetValue<double>(), Is.EqualTo(expectedAverageMs).Within(0.1));
            // Creation to success, retries included: the retried delivery waited 2 s for its second attempt.
            Assert.That(day["average_delivery_time_ms"]!.GetValue<double>(), Is.GreaterThan(2000.0 / 4));
            Assert.That(day["waiting"]!["pending"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(day["waiting"]!["retrying"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(mostFailing.Select(f => f!["subscription_id"]!.GetValue<Guid>()), Is.EqualTo(new[] { failingAfterRetry, failingAtOnce }),
                "ties on failures: the latest failure first");
            Assert.That(mostFailing.Select(f => f!["failed_deliveries"]!.GetValue<long>()), Is.EqualTo(new[] { 2L, 2L }));
            Assert.That(mostFailing.Select(f => f!["total_deliveries"]!.GetValue<long>()), Is.EqualTo(new[] { 2L, 2L }));
            Assert.That(mostFailing[0]!["url"]!.GetValue<string>(), Is.EqualTo(broken.Url + "/d"));
            Assert.That(mostFailing[0]!["last_failure_at"]!.GetValue<DateTimeOffset>(),
                Is.EqualTo(history.Where(d => d.SubscriptionId == failingAfterRetry).Max(d => d.CompletedAt)));
            Assert.That(day["window"]!.GetValue<string>(), Is.EqualTo("24h"));
            Assert.That(day["window_end"]!.GetValue<DateTimeOffset>() - day["window_start"]!.GetValue<DateTimeOffset>(), Is.EqualTo(TimeSpan.FromHours(24)));

            Assert.That(Counts(week["deliveries"]!), Is.EqualTo((11L, 5L, 4L, 0L, 2L)), "the 7d window holds the delivery of two days ago");
            Assert.That(week["success_rate"]!.GetValue<double>(), Is.EqualTo(Math.Round(5.0 / 9, 4)));

            Assert.That(Counts(strangersStats["deliveries"]!), Is.EqualTo((1L, 0L, 1L, 0L, 0L)), "the other user sees only their own delivery");
            Assert.That(strangersStats["waiting"]!["pending"]!.GetValue<long>(), Is.Zero);
        });
    }

    [Test]
    public async Task Stats_of_a_user_without_deliveries_are_zero_with_null_rates()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var stats = await StatsAsync(client, "");

        Assert.Multiple(() =>
        {
            Assert.That(stats["window"]!.GetValue<string>(), Is.EqualTo("24h"), "24h when no window is given");
            Assert.That(Counts(stats["deliveries"]!), Is.EqualTo((0L, 0L, 0L, 0L, 0L)));
            Assert.That(stats["success_rate"], Is.Null);
            Assert.That(stats["average_delivery_time_ms"], Is.Null);
            Assert.That(stats["most_failing"]!.AsArray(), Is.Empty);
        });
    }

    [TestCase("window=31d", "window")]
    [TestCase("window=0h", "window")]
    [TestCase("window=24", "window")]
    [TestCase("window=1w", "window")]
    [TestCase("window=-1h", "window")]
    [TestCase("window=", "window")]
    [TestCase("top=0", "top")]
    [TestCase("top=21", "top")]
    [TestCase("window=1y&top=x", "window", "top")]
    public async Task A_bad_window_or_top_answers_400_naming_the_field(string query, params string[] fields)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.GetAsync("/api/webhooks/stats?" + query);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(fields));
    }

    [TestCase("1m")]
    [TestCase("1h")]
    [TestCase("7d")]
    [TestCase("30d")]
    [TestCase("720h")]
    public async Task A_window_from_one_minute_to_thirty_days_is_accepted(string window)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.GetAsync("/api/webhooks/stats?window=" + window);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        Assert.That((await response.JsonAsync())["window"]!.GetValue<string>(), Is.EqualTo(window));
    }

    [Test]
    public async Task Stats_without_a_token_answer_401()
    {
        using var client = TestTokens.Client(null);

        Assert.That((await client.GetAsync("/api/webhooks/stats")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task The_timeline_puts_each_delivery_of_the_window_in_its_slice_and_only_the_callers()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var id = (await client.CreateAsync("https://example.com/hook", ["task.deleted"])).Id();
        using var strangerClient = TestTokens.Client(Events.NewUser());
        var strangers = (await strangerClient.CreateAsync("https://example.com/hook", ["task.deleted"])).Id();
        var now = DateTimeOffset.UtcNow;
        await AddDeliveryAsync(id, DeliveryStatus.Success, now.AddMinutes(-30), completedAt: now.AddMinutes(-30).AddSeconds(2));
        await AddDeliveryAsync(id, DeliveryStatus.Failed, now.AddMinutes(-30), completedAt: now.AddMinutes(-29));
        await AddDeliveryAsync(id, DeliveryStatus.Success, now.AddHours(-5.5), completedAt: now.AddHours(-5.5).AddSeconds(4));
        await AddDeliveryAsync(id, DeliveryStatus.Pending, now.AddHours(-5.5), completedAt: null);
        await AddDeliveryAsync(id, DeliveryStatus.Success, now.AddDays(-2), completedAt: now.AddDays(-2).AddSeconds(1));
        await AddDeliveryAsync(strangers, DeliveryStatus.Failed, now.AddMinutes(-30), completedAt: now.AddMinutes(-29));

        var response = await client.GetAsync("/api/webhooks/stats/timeline?window=24h");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        var timeline = await response.JsonAsync();
        var buckets = timeline["buckets"]!.AsArray();
        Assert.Multiple(() =>
        {
            Assert.That(timeline["bucket_seconds"]!.GetValue<int>(), Is.EqualTo(3600));
            Assert.That(buckets, Has.Count.EqualTo(24));
            Assert.That(buckets[0]!["start"]!.GetValue<DateTimeOffset>(), Is.EqualTo(timeline["window_start"]!.GetValue<DateTimeOffset>()));
            Assert.That(buckets[23]!["succeeded"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(buckets[23]!["failed"]!.GetValue<long>(), Is.EqualTo(1), "the stranger's failure is not counted");
            Assert.That(buckets[23]!["success_rate"]!.GetValue<double>(), Is.EqualTo(0.5));
            Assert.That(buckets[23]!["average_delivery_time_ms"]!.GetValue<double>(), Is.EqualTo(2000).Within(1));
            Assert.That(buckets[18]!["succeeded"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(buckets[18]!["other"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(buckets[18]!["average_delivery_time_ms"]!.GetValue<double>(), Is.EqualTo(4000).Within(1));
            Assert.That(buckets.Sum(b => b!["succeeded"]!.GetValue<long>()), Is.EqualTo(2), "the delivery of two days ago is outside");
            Assert.That(buckets.Where((_, i) => i is not (18 or 23)).Select(b => b!["success_rate"]), Is.All.Null);
        });
        var bad = await client.GetAsync("/api/webhooks/stats/timeline?window=31d");
        Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await bad.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "window" }));
    }

    private static async Task<JsonNode> StatsAsync(HttpClient client, string query)
    {
        var response = await client.GetAsync("/api/webhooks/stats" + query);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return await response.JsonAsync();
    }

    private static (long, long, long, long, long) Counts(JsonNode d) => (d["total"]!.GetValue<long>(), d["succeeded"]!.GetValue<long>(),
        d["failed"]!.GetValue<long>(), d["cancelled"]!.GetValue<long>(), d["in_progress"]!.GetValue<long>());

    /// <summary>A delivery row written directly: one no message will ever pick up (the next attempt is a day away).</summary>
    private static Task AddDeliveryAsync(Guid subscriptionId, string status, DateTimeOffset createdAt, DateTimeOffset? completedAt) =>
        Dispatcher.QueryAsync(async db =>
        {
            db.Deliveries.Add(new WebhookDelivery
            {
                Id = Guid.CreateVersion7(),
                SubscriptionId = subscriptionId,
                EventType = "task.deleted",
                EventId = Guid.NewGuid(),
                Payload = "{}",
                Status = status,
                AttemptCount = status == DeliveryStatus.Pending ? 0 : 1,
                MaxAttempts = 4,
                CreatedAt = createdAt,
                CompletedAt = completedAt,
                NextRetryAt = completedAt is null ? createdAt.AddDays(1) : null,
            });
            return await db.SaveChangesAsync();
        });
}
