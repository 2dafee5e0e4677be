using System.Diagnostics;
using System.Net;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// What the management API answers through a PostgreSQL restart, while PostgreSQL is down, and
/// while RabbitMQ is down, on the shared dispatcher (no restart of it). Not parallel: every other
/// test would lose the server too. The servers are started again whatever happens.
/// </summary>
[NonParallelizable]
public sealed class ApiOutageTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Far above the publish timeout (3 s) and far below what a request waiting for the broker
    /// took before (no answer in 120 s), so a busy machine cannot make it fail.
    /// </summary>
    private static readonly TimeSpan BrokerDownAnswerBound = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Any request's bound while the database is frozen: three times the API's deadline for a
    /// request's database work (<c>Database:ApiRequestTimeoutSeconds</c>, 10 s). Answers came after
    /// 15 s (cut off at the deadline, a statement still waits up to 5 s for the driver's cancel
    /// request) and 21 s for create and delete (a transaction's first statement ends only at its
    /// command timeout, 16 s). Before: reads 20–30 s, writes in a transaction 40 s.
    /// </summary>
    private static readonly TimeSpan FrozenAnswerBound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The slowest liveness answer while twenty requests wait on the frozen database: 0.2–1 s.
    /// Cancel requests that blocked pool threads, or pool threads waiting for their lock, stalled
    /// the process 9.3 s here before the request's cancellation ran off the pool
    /// (Subscriptions/RequestCancellation.cs), and 1–5 s while EF's command timeout still equalled
    /// the deadline (DataExtensions.ApiCommandTimeoutSeconds).
    /// </summary>
    private static readonly TimeSpan FrozenLivenessBound = TimeSpan.FromSeconds(4);

    [TearDown]
    public async Task StartServersAgainAsync()
    {
        await Servers.StartPostgresAsync();
        await Servers.StartBrokerAsync();
    }

    /// <summary>A user with a subscription (to a receiver answering 500) and one failed delivery of it.</summary>
    private sealed record Scene(HttpClient Client, Guid SubscriptionId, Guid DeliveryId) : IDisposable
    {
        public void Dispose() => Client.Dispose();
    }

    private static async Task<Scene> SceneAsync(TestReceiver receiver)
    {
        var user = Events.NewUser();
        var client = TestTokens.Client(user);
        var id = (await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 0)).Id();
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(id, DeliveryStatus.Failed, Patience), Is.True, "a failed delivery to retry");
        return new Scene(client, id, (await Dispatcher.DeliveriesAsync(id)).Single().Id);
    }

    /// <summary>Every endpoint that uses the database, with the status it answers when all is well.</summary>
    private static (string Name, HttpStatusCode Expected, Func<Task<HttpResponseMessage>> Send)[] Endpoints(Scene s)
    {
        var one = $"/api/webhooks/{s.SubscriptionId}";
        return
        [
            ("GET /api/webhooks", HttpStatusCode.OK, () => s.Client.GetAsync("/api/webhooks")),
            ("POST /api/webhooks", HttpStatusCode.Created,
                () => s.Client.PostJsonAsync("/api/webhooks", """{"url": "http://127.0.0.1:9/hook", "event_types": ["email.received"]}""")),
            ("GET /api/webhooks/stats", HttpStatusCode.OK, () => s.Client.GetAsync("/api/webhooks/stats")),
            ("GET /api/webhooks/{id}", HttpStatusCode.OK, () => s.Client.GetAsync(one)),
            ("PATCH /api/webhooks/{id}", HttpStatusCode.OK, () => s.Client.PatchJsonAsync(one, """{"description": "after a restart"}""")),
            ("GET /api/webhooks/{id}/deliveries", HttpStatusCode.OK, () => s.Client.GetAsync(one + "/deliveries?include_attempts=true")),
            ("POST /api/webhooks/{id}/test", HttpStatusCode.OK, () => s.Client.PostAsync(one + "/test", null)),
            ("POST /api/webhooks/{id}/rotate-secret", HttpStatusCode.OK, () => s.Client.PostAsync(one + "/rotate-secret", null)),
            ("POST /api/webhooks/{id}/deliveries/{delivery_id}/retry", HttpStatusCode.Accepted,
                () => s.Client.PostAsync($"{one}/deliveries/{s.DeliveryId}/retry", null)),
            ("DELETE /api/webhooks/{id}", HttpStatusCode.NoContent, () => s.Client.DeleteAsync(one)),
        ];
    }

    [Test]
    public async Task After_a_PostgreSQL_restart_each_endpoint_s_first_request_succeeds()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        using var scene = await SceneAsync(receiver);
        var answers = new List<string>();
        foreach (var (name, expected, send) in Endpoints(scene))
        {
            // Several pooled connections, every one of which the restart breaks.
            await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => scene.Client.GetAsync("/api/webhooks")));
            await Servers.StopPostgresAsync();
            await Servers.StartPostgresAsync();

            using var response = await send();

            answers.Add($"{name}: {(int)response.StatusCode}{(response.StatusCode == expected ? "" : " " + await response.Content.ReadAsStringAsync())}");
            Assert.That(response.StatusCode, Is.EqualTo(expected), string.Join("\n", answers));
        }
    }

    [Test]
    public async Task While_PostgreSQL_is_down_every_endpoint_that_needs_it_answers_503_with_Retry_After_and_the_others_work()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        using var scene = await SceneAsync(receiver);
        using var anonymous = TestTokens.Client(null);

        var answers = new List<(string Name, HttpStatusCode Status, string? RetryAfter, string? MediaType, string Body)>();
        HttpStatusCode eventTypes, live;
        await Servers.StopPostgresAsync();
        try
        {
            foreach (var (name, _, send) in Endpoints(scene))
            {
                using var response = await send();
                answers.Add((name, response.StatusCode, response.Headers.RetryAfter?.Delta?.TotalSeconds.ToString(),
                    response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync()));
            }
            eventTypes = (await scene.Client.GetAsync("/api/webhooks/event-types")).StatusCode;
            live = (await anonymous.GetAsync("/health/live")).StatusCode;
        }
        finally
        {
            await Servers.StartPostgresAsync();
        }

        Assert.Multiple(() =>
        {
            foreach (var a in answers)
            {
                Assert.That(a.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), $"{a.Name}: {a.Body}");
                Assert.That(a.RetryAfter, Is.EqualTo("5"), $"{a.Name}: Retry-After");
                Assert.That(a.MediaType, Is.EqualTo("application/problem+json"), a.Name);
                Assert.That(a.Body, Does.Contain("Database unavailable"), a.Name);
            }
            Assert.That(eventTypes, Is.EqualTo(HttpStatusCode.OK), "the event catalog needs no database");
            Assert.That(live, Is.EqualTo(HttpStatusCode.OK), "liveness does not depend on the database");
        });
        // Nothing the outage refused happened: the subscription is still there, its delivery still failed.
        Assert.That((await scene.Client.GetAsync($"/api/webhooks/{scene.SubscriptionId}")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Dispatcher.DeliveriesAsync(scene.SubscriptionId)).Single().Status, Is.EqualTo(DeliveryStatus.Failed));
    }

    /// <summary>
    /// A database that hangs (the host froze, or a network drops its packets) refuses nothing: a
    /// request's statement waits for an answer that never comes. It must still be answered
    /// within seconds, 503 with Retry-After, not after the driver's 30 s command timeout (twice,
    /// with the retry), as before; and while twenty requests wait so, the process keeps answering
    /// (its liveness probe).
    /// </summary>
    [Test]
    public async Task While_PostgreSQL_is_frozen_every_endpoint_that_needs_it_answers_503_with_Retry_After_within_seconds_and_liveness_keeps_answering()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        using var scene = await SceneAsync(receiver);

        using var anonymous = TestTokens.Client(null);
        var answers = new List<(string Name, HttpStatusCode Status, string? RetryAfter, TimeSpan Took, string Body)>();
        var liveness = TimeSpan.Zero;
        // Idle connections in the pool, as a busy API has: statements already sent on a pooled
        // connection wait for their answer (and the driver's cancel request) rather than for a
        // new connection's startup answer (Npgsql Timeout).
        await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => scene.Client.GetAsync("/api/webhooks")));
        await using (await PostgresServer.FreezeAsync())
        {
            // Concurrently: one after another, ten endpoints would take ten times the bound. And
            // ten more reads, so that twenty requests are cut off at about the same moment.
            var requests = Endpoints(scene).Concat(Enumerable.Range(1, 10).Select(i =>
                    ($"GET /api/webhooks ({i})", HttpStatusCode.OK, (Func<Task<HttpResponseMessage>>)(() => scene.Client.GetAsync("/api/webhooks")))))
                .Select(async e =>
                {
                    var clock = Stopwatch.StartNew();
                    using var response = await e.Item3();
                    var entry = (e.Item1, response.StatusCode, response.Headers.RetryAfter?.Delta?.TotalSeconds.ToString(), clock.Elapsed,
                        await response.Content.ReadAsStringAsync());
                    lock (answers) answers.Add(entry);
                }).ToList();
            // Meanwhile the liveness probe, as an orchestrator sends it: its slowest answer.
            var all = Task.WhenAll(requests);
            while (!all.IsCompleted)
            {
                var clock = Stopwatch.StartNew();
                using (var response = await anonymous.GetAsync("/health/live"))
                    Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), "liveness does not depend on the database");
                if (clock.Elapsed > liveness) liveness = clock.Elapsed;
                await Task.WhenAny(all, Task.Delay(200));
            }
            await all;
        }
        TestContext.Progress.WriteLine($"frozen: slowest liveness answer {liveness.TotalSeconds:0.0} s; " +
            string.Join(", ", answers.OrderBy(a => a.Took).Select(a => $"{a.Name} {(int)a.Status} {a.Took.TotalSeconds:0.0} s")));

        Assert.Multiple(() =>
        {
            foreach (var a in answers)
            {
                Assert.That(a.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), $"{a.Name}: {a.Body}");
                Assert.That(a.RetryAfter, Is.EqualTo("5"), $"{a.Name}: Retry-After");
                Assert.That(a.Took, Is.LessThan(FrozenAnswerBound), $"{a.Name} answered within the bound");
            }
            Assert.That(liveness, Is.LessThan(FrozenLivenessBound), "the process kept answering while requests waited");
        });
        // The API serves again once the database answers. (What a cut-off write did is unknown, as
        // with any answer that does not come in time: its statement may run when the server wakes.)
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await scene.Client.GetAsync("/api/webhooks")).StatusCode == HttpStatusCode.OK, Patience), Is.True);
    }

    [Test]
    public async Task Retry_with_RabbitMQ_down_answers_202_within_seconds_a_second_call_409_and_the_delivery_is_attempted_once_it_is_back()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        using var scene = await SceneAsync(receiver);
        var retryPath = $"/api/webhooks/{scene.SubscriptionId}/deliveries/{scene.DeliveryId}/retry";

        HttpStatusCode first, second, test;
        TimeSpan firstTook;
        string secondBody, testBody;
        await Servers.StopBrokerAsync();
        try
        {
            var clock = Stopwatch.StartNew();
            using (var response = await scene.Client.PostAsync(retryPath, null))
            {
                first = response.StatusCode;
                firstTook = clock.Elapsed;
            }
            using (var response = await scene.Client.PostAsync(retryPath, null))
            {
                second = response.StatusCode;
                secondBody = await response.Content.ReadAsStringAsync();
            }
            // The test send goes straight to the receiver: no broker involved.
            using (var response = await scene.Client.PostAsync($"/api/webhooks/{scene.SubscriptionId}/test", null))
            {
                test = response.StatusCode;
                testBody = await response.Content.ReadAsStringAsync();
            }
        }
        finally
        {
            await Servers.StartBrokerAsync();
        }
        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(HttpStatusCode.Accepted));
            Assert.That(firstTook, Is.LessThan(BrokerDownAnswerBound), "the retry did not wait for the broker");
            Assert.That(second, Is.EqualTo(HttpStatusCode.Conflict), secondBody);
            Assert.That(secondBody, Does.Contain("Delivery already pending").And.Contain("will be attempted without another request"));
            Assert.That(test, Is.EqualTo(HttpStatusCode.OK), testBody);
            Assert.That(testBody, Does.Contain("\"success\":true"));
        });
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(AllBusesHealthy()), Patience), Is.True, "buses reconnected");

        // The new round is stored as due: the reconciler publishes it once it is overdue by its grace.
        var reconciler = Dispatcher.Services.GetRequiredService<DeliveryReconciler>();
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            if ((await Dispatcher.DeliveriesAsync(scene.SubscriptionId)).Single().Status == DeliveryStatus.Success) return true;
            await reconciler.RunOnceAsync(CancellationToken.None);
            return false;
        }, Patience), Is.True, "attempted after the broker returned");
        var delivery = (await Dispatcher.DeliveriesAsync(scene.SubscriptionId)).Single();
        Assert.That(delivery.Attempts.Select(a => a.StatusCode), Is.EqualTo(new int?[] { 500, 200 }), "one attempt of the new round");
    }

    private static bool AllBusesHealthy() =>
        new[] { Dispatcher.Services }.Concat(IsolatedDispatcher.Running.Select(i => i.Services))
            .All(s => s.GetRequiredService<IBusControl>().CheckHealth().Status == BusHealthStatus.Healthy);
}
