using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

[Parallelizable(ParallelScope.All)]
public sealed class CursorPaginationTests
{
    [Test]
    public async Task Walking_the_delivery_history_by_cursor_while_200_new_deliveries_arrive_and_statuses_change_sees_each_older_row_exactly_once()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        // 250 older rows, five per timestamp so the id must break ties, in final states the pipeline leaves alone.
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        var older = Enumerable.Range(0, 250).Select(i => new WebhookDelivery
        {
            Id = Guid.CreateVersion7(), // deliveries live in the day partition of their id's time
            SubscriptionId = subscription.Id,
            EventType = "email.received",
            EventId = Guid.NewGuid(),
            Payload = "{}",
            Status = i % 2 == 0 ? DeliveryStatus.Failed : DeliveryStatus.Cancelled,
            MaxAttempts = 4,
            CreatedAt = start.AddSeconds(i / 5),
        }).ToList();
        await using (var scope = Dispatcher.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<WebhookDbContext>();
            db.Deliveries.AddRange(older);
            await db.SaveChangesAsync();
        }

        using var client = TestTokens.Client(user);
        var seen = new List<(Guid Id, DateTimeOffset CreatedAt)>();
        string? cursor = null;
        var pages = 0;
        var published = 0;
        do
        {
            var page = await (await client.GetAsync($"/api/webhooks/{subscription.Id}/deliveries?limit=20" +
                (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)))).JsonAsync();
            seen.AddRange(page["data"]!.AsArray().Select(d => (d!["id"]!.GetValue<Guid>(), d["created_at"]!.GetValue<DateTimeOffset>())));
            if (cursor is not null) Assert.That(page["offset"], Is.Null, "a cursor page has no offset");
            cursor = page["next_cursor"]?.GetValue<string>();
            Assert.That(page["has_more"]!.GetValue<bool>(), Is.EqualTo(cursor is not null));
            pages++;

            // Between pages: new deliveries arrive through the real pipeline, older rows change status.
            var batch = Math.Min(200 - published, 20);
            await Task.WhenAll(Enumerable.Range(0, batch).Select(_ => Dispatcher.PublishAsync(Events.EmailReceived(user))));
            published += batch;
            var flip = older.Skip(pages * 17 % 250).Take(25).Select(d => d.Id).ToList();
            await Dispatcher.QueryAsync(db => db.Deliveries.Where(d => flip.Contains(d.Id))
                .ExecuteUpdateAsync(u => u.SetProperty(d => d.Status, d => d.Status == DeliveryStatus.Failed ? DeliveryStatus.Cancelled : DeliveryStatus.Failed)));
        }
        while (cursor is not null && pages < 100);

        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            await Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d => d.SubscriptionId == subscription.Id)) == 450, TimeSpan.FromSeconds(60)),
            Is.True, "the 200 new deliveries arrived during the walk");
        var olderIds = older.Select(d => d.Id).ToHashSet();
        Assert.Multiple(() =>
        {
            Assert.That(published, Is.EqualTo(200));
            Assert.That(seen.Select(s => s.Id), Is.Unique, "no row twice");
            Assert.That(seen.Where(s => olderIds.Contains(s.Id)).Select(s => s.Id), Is.EquivalentTo(olderIds), "every older row once");
            Assert.That(seen.Select(s => s.CreatedAt), Is.Ordered.Descending, "newest first");
        });
    }

    [Test]
    public async Task A_filtered_page_reads_at_most_5000_deliveries_and_a_walk_by_cursor_still_finds_every_match_once()
    {
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, "https://example.com/hook", ["email.received"]);
        // 12,000 deliveries a millisecond apart, newest last; two failed: the 5th newest and the 6th oldest.
        var failedAt = new[] { 11995, 5 };
        await using (var db = await Dispatcher.Services.GetRequiredService<Npgsql.NpgsqlDataSource>().OpenConnectionAsync())
        await using (var insert = new Npgsql.NpgsqlCommand("""
            INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at)
            SELECT webhook_uuid_v7_at(t, gen_random_uuid()), $1, 'email.received', gen_random_uuid(), '{}',
                   CASE WHEN i = ANY($2) THEN 'failed' ELSE 'success' END, 1, 1, t
            FROM (SELECT i, now() - interval '1 hour' + i * interval '1 millisecond' AS t FROM generate_series(0, 11999) i) s
            """, db))
        {
            insert.Parameters.Add(new() { Value = subscription.Id });
            insert.Parameters.Add(new() { Value = failedAt });
            Assert.That(await insert.ExecuteNonQueryAsync(), Is.EqualTo(12000));
        }
        using var client = TestTokens.Client(user);

        var pages = new List<int>();
        var found = new List<System.Text.Json.Nodes.JsonNode>();
        string? cursor = null;
        do
        {
            var page = await (await client.GetAsync($"/api/webhooks/{subscription.Id}/deliveries?status=failed&limit=2{(cursor is null ? "" : $"&cursor={cursor}")}")).JsonAsync();
            var data = page["data"]!.AsArray();
            pages.Add(data.Count);
            found.AddRange(data.Select(d => d!));
            cursor = page["next_cursor"]?.GetValue<string>();
            Assert.That(page["has_more"]!.GetValue<bool>(), Is.EqualTo(cursor is not null));
        } while (cursor is not null && pages.Count < 10);

        Assert.That(found.Select(d => d["status"]!.GetValue<string>()), Is.All.EqualTo("failed"));
        Assert.That(found.Select(d => d["id"]!.GetValue<Guid>()).Distinct().Count(), Is.EqualTo(2), "every failed delivery once");
        // Each page read 5,000 deliveries at most: the newest 5,000 (one match), the next 5,000 (none), the last 2,000 (one).
        Assert.That(pages, Is.EqualTo(new[] { 1, 0, 1 }));
    }

    [Test]
    public async Task Walking_subscriptions_by_cursor_while_new_ones_are_created_sees_each_older_one_exactly_once()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var older = new HashSet<Guid>();
        for (var i = 0; i < 23; i++) older.Add((await client.CreateAsync($"https://example.com/hook/{i}", ["task.created"])).Id());

        var seen = new List<Guid>();
        string? cursor = null;
        var page = 0;
        do
        {
            var json = await (await client.GetAsync("/api/webhooks?limit=5" + (cursor is null ? "" : "&cursor=" + cursor))).JsonAsync();
            seen.AddRange(json["data"]!.AsArray().Select(s => s!["id"]!.GetValue<Guid>()));
            cursor = json["next_cursor"]?.GetValue<string>();
            await client.CreateAsync($"https://example.com/new/{page++}", ["task.created"]);
        }
        while (cursor is not null && page < 50);

        Assert.That(seen, Is.Unique);
        Assert.That(seen, Is.EquivalentTo(older), "every older subscription once, none of those created during the walk");
    }

    [Test]
    public async Task Offset_pages_also_carry_the_cursor_to_continue_from()
    {
        using var client = TestTokens.Client(Events.NewUser());
        for (var i = 0; i < 5; i++) await client.CreateAsync($"https://example.com/hook/{i}", ["task.created"]);

        var first = await (await client.GetAsync("/api/webhooks?limit=2&offset=1")).JsonAsync();
        var next = await (await client.GetAsync("/api/webhooks?limit=2&cursor=" + first["next_cursor"]!.GetValue<string>())).JsonAsync();
        var byOffset = await (await client.GetAsync("/api/webhooks?limit=2&offset=3")).JsonAsync();
        var last = await (await client.GetAsync("/api/webhooks?limit=5&offset=0")).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(first["offset"]!.GetValue<int>(), Is.EqualTo(1));
            Assert.That(first["has_more"]!.GetValue<bool>(), Is.True);
            Assert.That(next["data"]!.ToJsonString(), Is.EqualTo(byOffset["data"]!.ToJsonString()), "the cursor continues where the offset page ended");
            Assert.That(last["has_more"]!.GetValue<bool>(), Is.False);
            Assert.That(last["next_cursor"], Is.Null);
        });
    }

    [Test]
    public async Task A_cursor_that_this_list_did_not_issue_or_one_combined_with_offset_answers_400_naming_cursor()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        for (var i = 0; i < 3; i++) await client.CreateAsync($"https://example.com/hook/{i}", ["task.created"]);
        var subscriptions = await (await client.GetAsync("/api/webhooks?limit=1")).JsonAsync();
        var cursor = subscriptions["next_cursor"]!.GetValue<string>();
        var id = subscriptions["data"]![0]!["id"]!.GetValue<Guid>();

        foreach (var path in new[]
                 {
                     $"/api/webhooks/{id}/deliveries?cursor={cursor}", // another list's cursor
                     "/api/webhooks?cursor=" + cursor[..^4], // cut short
                     "/api/webhooks?cursor=not-a-cursor",
                     "/api/webhooks?cursor=",
                     $"/api/webhooks?cursor={cursor}&offset=0",
                 })
        {
            var response = await client.GetAsync(path);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), path);
            Assert.That((await response.JsonAsync()).ErrorFields(), Does.Contain("cursor"), path);
        }
    }
}
