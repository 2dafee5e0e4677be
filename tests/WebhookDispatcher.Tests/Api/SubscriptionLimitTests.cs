using System.Diagnostics;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// The per-user limits of <c>POST /api/webhooks</c> (issue 14): <c>Subscriptions:MaxPerUser</c>
/// answers 409 and <c>Subscriptions:CreatesPerMinute</c> 429 with <c>Retry-After</c>; a refused
/// create stores nothing, and both hold for concurrent creates through two replicas of the API.
/// Each limit runs on API-only dispatchers of its own with a small setting, two replicas each.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class SubscriptionLimitTests
{
    private const int MaxPerUser = 3;
    private const int CreatesPerMinute = 3;
    private const string Body = """{"url":"https://hooks.example.com/limits","event_types":["email.received"]}""";

    private IsolatedDispatcher _counted = null!, _counted2 = null!, _rated = null!, _rated2 = null!;

    [OneTimeSetUp]
    public async Task StartReplicas()
    {
        // Two API replicas per limit, sharing the run's database and broker as one deployment would.
        var counted = Settings(maxPerUser: MaxPerUser, createsPerMinute: 1000);
        var rated = Settings(maxPerUser: 1000, createsPerMinute: CreatesPerMinute);
        var started = await Task.WhenAll(
            IsolatedDispatcher.StartAsync(counted, sharedBroker: true), IsolatedDispatcher.StartAsync(counted, sharedBroker: true),
            IsolatedDispatcher.StartAsync(rated, sharedBroker: true), IsolatedDispatcher.StartAsync(rated, sharedBroker: true));
        (_counted, _counted2, _rated, _rated2) = (started[0], started[1], started[2], started[3]);
    }

    [OneTimeTearDown]
    public async Task StopReplicas()
    {
        foreach (var api in new[] { _counted, _counted2, _rated, _rated2 })
            if (api is not null) await api.DisposeAsync();
    }

    private static Dictionary<string, string?> Settings(int maxPerUser, int createsPerMinute) => new()
    {
        ["Dispatcher:Workers"] = "false",
        ["Subscriptions:MaxPerUser"] = maxPerUser.ToString(),
        ["Subscriptions:CreatesPerMinute"] = createsPerMinute.ToString(),
    };

    /// <summary>Every subscription row of the user, deleted ones included, as (id, created_at, deleted).</summary>
    private static Task<List<(Guid Id, DateTimeOffset CreatedAt, bool Deleted)>> RowsAsync(string user) =>
        Dispatcher.QueryAsync(async db => (await db.Subscriptions.IgnoreQueryFilters().AsNoTracking().Where(s => s.UserId == user)
                .OrderBy(s => s.CreatedAt).Select(s => new { s.Id, s.CreatedAt, s.DeletedAt }).ToListAsync())
            .Select(s => (s.Id, s.CreatedAt, s.DeletedAt != null)).ToList());

    private static async Task<HttpStatusCode> CreateAsync(HttpClient client) => (await client.PostJsonAsync("/api/webhooks", Body)).StatusCode;

    [Test]
    public async Task One_subscription_past_the_limit_answers_409_naming_it_and_stores_nothing()
    {
        var user = Events.NewUser();
        using var client = _counted.Client(user);
        var first = new List<HttpStatusCode>();
        for (var i = 0; i < MaxPerUser; i++) first.Add(await CreateAsync(client));
        var before = await RowsAsync(user);

        var refused = await client.PostJsonAsync("/api/webhooks", Body);
        var problem = await refused.JsonAsync();
        var after = await RowsAsync(user);
        var listed = await (await client.GetAsync("/api/webhooks")).JsonAsync();
        using var other = _counted.Client(Events.NewUser());
        var otherUser = await CreateAsync(other);

        Assert.Multiple(() =>
        {
            Assert.That(first, Has.All.EqualTo(HttpStatusCode.Created));
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(refused.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That(problem["status"]!.GetValue<int>(), Is.EqualTo(409));
            Assert.That(problem["title"]!.GetValue<string>(), Is.EqualTo("Subscription limit reached"));
            Assert.That(problem["limit"]!.GetValue<int>(), Is.EqualTo(MaxPerUser));
            Assert.That(problem["current"]!.GetValue<int>(), Is.EqualTo(MaxPerUser));
            Assert.That(problem["detail"]!.GetValue<string>(), Does.Contain($"at most {MaxPerUser} subscriptions"));
            Assert.That(before, Has.Count.EqualTo(MaxPerUser));
            Assert.That(after, Is.EqualTo(before), "the refused create stored nothing");
            Assert.That(listed["total"]!.GetValue<int>(), Is.EqualTo(MaxPerUser));
            Assert.That(otherUser, Is.EqualTo(HttpStatusCode.Created), "another user is not limited by this one's subscriptions");
        });
    }

    [Test]
    public async Task Deleted_subscriptions_do_not_count_towards_the_limit()
    {
        var user = Events.NewUser();
        using var client = _counted.Client(user);
        var ids = new List<Guid>();
        for (var i = 0; i < MaxPerUser; i++) ids.Add((await client.CreateAsync("https://hooks.example.com/limits", ["email.received"])).Id());
        var atLimit = await CreateAsync(client);

        var deleted = await client.DeleteAsync($"/api/webhooks/{ids[0]}");
        var afterDelete = await CreateAsync(client);
        var atLimitAgain = await CreateAsync(client);
        var rows = await RowsAsync(user);

        Assert.Multiple(() =>
        {
            Assert.That(atLimit, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
            Assert.That(afterDelete, Is.EqualTo(HttpStatusCode.Created), "a deleted subscription frees its place");
            Assert.That(atLimitAgain, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(rows.Count(r => !r.Deleted), Is.EqualTo(MaxPerUser));
            Assert.That(rows, Has.Count.EqualTo(MaxPerUser + 1));
        });
    }

    [Test]
    public async Task Concurrent_creates_through_two_replicas_never_exceed_the_limit()
    {
        var user = Events.NewUser();
        using var one = _counted.Client(user);
        using var two = _counted2.Client(user);
        Assert.That(await CreateAsync(one), Is.EqualTo(HttpStatusCode.Created));

        // 16 at once, half through each replica, for the 2 places left.
        var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => CreateAsync(i % 2 == 0 ? one : two)));
        var rows = await RowsAsync(user);

        Assert.Multiple(() =>
        {
            Assert.That(answers.Count(a => a == HttpStatusCode.Created), Is.EqualTo(MaxPerUser - 1), string.Join(", ", answers));
            Assert.That(answers.Count(a => a == HttpStatusCode.Conflict), Is.EqualTo(16 - (MaxPerUser - 1)), string.Join(", ", answers));
            Assert.That(rows, Has.Count.EqualTo(MaxPerUser), "stored: exactly the limit");
        });
    }

    [Test]
    public async Task Creating_past_the_rate_answers_429_with_Retry_After_until_the_oldest_creation_leaves_the_window()
    {
        var user = Events.NewUser();
        using var client = _rated.Client(user);
        var clock = Stopwatch.StartNew();
        var first = new List<HttpStatusCode>();
        for (var i = 0; i < CreatesPerMinute; i++) first.Add(await CreateAsync(client));
        var before = await RowsAsync(user);

        var refused = await client.PostJsonAsync("/api/webhooks", Body);
        var elapsed = clock.Elapsed;
        var problem = await refused.JsonAsync();
        var retryAfter = refused.Headers.RetryAfter?.Delta;
        var after = await RowsAsync(user);
        using var other = _rated.Client(Events.NewUser());
        var otherUser = await CreateAsync(other);

        Assert.Multiple(() =>
        {
            Assert.That(first, Has.All.EqualTo(HttpStatusCode.Created));
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(refused.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That(problem["status"]!.GetValue<int>(), Is.EqualTo(429));
            Assert.That(problem["title"]!.GetValue<string>(), Is.EqualTo("Too many subscriptions created"));
            Assert.That(problem["limit"]!.GetValue<int>(), Is.EqualTo(CreatesPerMinute));
            Assert.That(problem["current"]!.GetValue<int>(), Is.EqualTo(CreatesPerMinute));
            // Whole seconds until the first of the three is 60 s old: at most 60, and no less
            // than what is left of its minute however slow this machine was.
            Assert.That(retryAfter, Is.Not.Null, "Retry-After in seconds");
            Assert.That(retryAfter, Is.InRange(TimeSpan.FromSeconds(Math.Max(1, Math.Floor(60 - elapsed.TotalSeconds))), TimeSpan.FromSeconds(60)));
            Assert.That(problem["retry_after_seconds"]!.GetValue<int>(), Is.EqualTo((int)(retryAfter?.TotalSeconds ?? -1)));
            Assert.That(after, Is.EqualTo(before), "the refused create stored nothing");
            Assert.That(otherUser, Is.EqualTo(HttpStatusCode.Created), "another user is not limited by this one's rate");
        });

        // Most of a minute passing, for the oldest creation only: 10 s are left of its window.
        await using (var connection = new NpgsqlConnection(TestInfrastructure.Postgres))
        {
            await connection.OpenAsync();
            await using var age = new NpgsqlCommand("UPDATE webhook_subscriptions SET created_at = clock_timestamp() - interval '50 seconds' WHERE id = $1",
                connection) { Parameters = { new() { Value = before[0].Id } } };
            Assert.That(await age.ExecuteNonQueryAsync(), Is.EqualTo(1));
        }
        var almost = await client.PostJsonAsync("/api/webhooks", Body);
        var shortWait = almost.Headers.RetryAfter?.Delta;
        Assert.That(almost.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(shortWait, Is.InRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10)), "until the aged creation leaves the window");
        await Task.Delay(shortWait!.Value);
        var afterWait = await CreateAsync(client);
        var next = await CreateAsync(client);

        Assert.Multiple(() =>
        {
            Assert.That(afterWait, Is.EqualTo(HttpStatusCode.Created), "Retry-After was long enough");
            Assert.That(next, Is.EqualTo(HttpStatusCode.TooManyRequests), "the window holds the limit again");
        });
    }

    [Test]
    public async Task Deleting_what_was_created_does_not_reset_the_rate()
    {
        var user = Events.NewUser();
        using var client = _rated.Client(user);
        for (var i = 0; i < CreatesPerMinute; i++)
        {
            var created = await client.CreateAsync("https://hooks.example.com/limits", ["email.received"]);
            Assert.That((await client.DeleteAsync($"/api/webhooks/{created.Id()}")).StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
        }
        var before = await RowsAsync(user);

        var refused = await client.PostJsonAsync("/api/webhooks", Body);
        var after = await RowsAsync(user);

        Assert.Multiple(() =>
        {
            Assert.That(before.Count(r => !r.Deleted), Is.Zero, "the user has no subscription left");
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(refused.Headers.RetryAfter?.Delta, Is.InRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60)));
            Assert.That(after, Is.EqualTo(before), "the refused create stored nothing");
        });
    }

    [Test]
    public async Task Concurrent_creates_through_two_replicas_never_exceed_the_rate()
    {
        var user = Events.NewUser();
        using var one = _rated.Client(user);
        using var two = _rated2.Client(user);

        var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => CreateAsync(i % 2 == 0 ? one : two)));
        var rows = await RowsAsync(user);

        Assert.Multiple(() =>
        {
            Assert.That(answers.Count(a => a == HttpStatusCode.Created), Is.EqualTo(CreatesPerMinute), string.Join(", ", answers));
            Assert.That(answers.Count(a => a == HttpStatusCode.TooManyRequests), Is.EqualTo(16 - CreatesPerMinute), string.Join(", ", answers));
            Assert.That(rows, Has.Count.EqualTo(CreatesPerMinute), "stored: exactly the rate");
        });
    }

    [Test]
    public void A_limit_out_of_range_stops_the_start_naming_the_setting()
    {
        var error = Assert.ThrowsAsync(Is.InstanceOf<Exception>(), async () =>
        {
            await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
            {
                ["Dispatcher:Workers"] = "false",
                ["Subscriptions:MaxPerUser"] = "0",
                ["Subscriptions:CreatesPerMinute"] = "100001",
            }, sharedBroker: true);
        });
        Assert.That(error!.ToString(), Does.Contain("MaxPerUser").And.Contain("CreatesPerMinute"));
    }
}
