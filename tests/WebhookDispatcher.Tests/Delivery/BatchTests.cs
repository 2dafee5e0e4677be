using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Batched deliveries through the whole pipeline (broker → fan-out → batch stage → lane → attempt
/// → receiver; docs/decisions/0015): every event in exactly one batch, bodies made of the events'
/// exact payloads, signed once, a retry byte-identical; max_wait closes a partial batch, max_bytes
/// splits; batch → null hands waiting events back one by one; the sweep forms the batch of events
/// a dispatcher left waiting; the history shows which events went in which batch.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class BatchTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    private static async Task<WebhookSubscription> BatchedAsync(WebhookSubscription s, int maxEvents, int maxWaitMs, int maxBytes = 256 * 1024)
    {
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(x => x.Id == s.Id).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.BatchMaxEvents, maxEvents).SetProperty(x => x.BatchMaxWaitMs, maxWaitMs).SetProperty(x => x.BatchMaxBytes, maxBytes)));
        return s;
    }

    /// <summary>The events of a batch body as their exact text, and the body's own fields.</summary>
    private static (JsonElement Root, List<string> Events) Parse(ReceivedRequest request)
    {
        var root = JsonDocument.Parse(request.Body).RootElement;
        return (root, [.. root.GetProperty("events").EnumerateArray().Select(e => e.GetRawText())]);
    }

    private static Guid IdOf(string payload) => JsonDocument.Parse(payload).RootElement.GetProperty("id").GetGuid();

    private static int EventsReceived(TestReceiver receiver) => receiver.Requests.Sum(r => Parse(r).Events.Count);

    [Test]
    public async Task Two_hundred_fifty_events_with_max_events_100_arrive_in_three_signed_posts_each_event_once_and_byte_exact()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        // The longest wait: only the last batch, of 50, waits for it; the full ones close at 100 however slowly the events come.
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 100, maxWaitMs: 10_000);
        var events = Enumerable.Range(0, 250).Select(_ => Events.EmailReceived(user)).ToList();

        foreach (var chunk in events.Chunk(25)) await Task.WhenAll(chunk.Select(Dispatcher.PublishAsync));

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 250), Patience), Is.True,
            $"all 250 events arrive; {EventsReceived(receiver)} did");
        var requests = receiver.Requests;
        var received = requests.SelectMany(r => Parse(r).Events).ToList();
        var expected = events.ToDictionary(e => e.EventId, e => WebhookPayload.Build(e));
        Assert.Multiple(() =>
        {
            Assert.That(requests, Has.Count.EqualTo(3), "100 + 100 + 50");
            Assert.That(requests.Select(r => Parse(r).Events.Count).OrderBy(n => n), Is.EqualTo(new[] { 50, 100, 100 }));
            Assert.That(received.Select(IdOf), Is.EquivalentTo(events.Select(e => e.EventId)), "every event exactly once");
            foreach (var payload in received)
                Assert.That(payload, Is.EqualTo(expected[IdOf(payload)]), "each event byte-for-byte as a single delivery carries it");
            foreach (var r in requests)
            {
                var (root, _) = Parse(r);
                Assert.That(root.GetProperty("event_type").GetString(), Is.EqualTo("batch"));
                Assert.That(r.Headers["webhook-id"], Is.EqualTo(root.GetProperty("id").GetString()), "webhook-id is the batch id");
                Assert.That(r.Headers["x-webhook-event"], Is.EqualTo("batch"));
                Assert.That(Signatures.LegacyVerifies(r, s.Secret), Is.True, "X-Webhook-Signature over the batch body");
                Assert.That(Signatures.StandardVerifies(r, s.Secret), Is.True, "webhook-signature v1 over the batch body");
            }
        });
        // The history: one row per event (its member delivery) and one per batch; members follow their batch's status.
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(s.Id)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True);
        var rows = await Dispatcher.DeliveriesAsync(s.Id);
        var batches = rows.Where(d => d.BatchSize is not null).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(batches, Has.Count.EqualTo(3));
            Assert.That(batches.Select(b => b.Id.ToString()), Is.EquivalentTo(requests.Select(r => r.Headers["webhook-id"])));
            Assert.That(rows.Where(d => d.BatchSize is null).Select(d => d.EventId), Is.EquivalentTo(events.Select(e => e.EventId)));
            foreach (var b in batches)
                Assert.That(rows.Count(d => d.BatchId == b.Id), Is.EqualTo(b.BatchSize), "each batch's members");
        });
        // The statistics count events, each with its batch's outcome, not the batches again.
        using var client = TestTokens.Client(user);
        var stats = await (await client.GetAsync("/api/webhooks/stats?window=1h")).JsonAsync();
        Assert.That((stats["deliveries"]!["total"]!.GetValue<long>(), stats["deliveries"]!["succeeded"]!.GetValue<long>()), Is.EqualTo((250L, 250L)),
            stats.ToJsonString());
    }

    [Test]
    public async Task A_batch_retry_sends_the_same_bytes_with_the_same_webhook_id_and_verifiable_signatures()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 2), maxEvents: 5, maxWaitMs: 10_000);
        var events = Enumerable.Range(0, 5).Select(_ => Events.EmailReceived(user)).ToList();

        foreach (var e in events) await Dispatcher.PublishAsync(e);

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "a first attempt (500) and its retry");
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(requests[1].Body, Is.EqualTo(requests[0].Body), "byte-identical retry");
            Assert.That(requests[1].Headers["webhook-id"], Is.EqualTo(requests[0].Headers["webhook-id"]));
            Assert.That(Parse(requests[0]).Events.Select(IdOf), Is.EquivalentTo(events.Select(e => e.EventId)));
            foreach (var r in requests)
            {
                Assert.That(Signatures.LegacyVerifies(r, s.Secret), Is.True);
                Assert.That(Signatures.StandardVerifies(r, s.Secret), Is.True);
            }
        });
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(s.Id)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True,
            "the batch succeeded on its retry and its members took its status");
        var batch = (await Dispatcher.DeliveriesAsync(s.Id)).Single(d => d.BatchSize is not null);
        Assert.That(batch.Attempts.Select(a => a.StatusCode), Is.EqualTo(new int?[] { 500, 200 }));
    }

    [Test]
    public async Task A_batch_of_large_events_is_stored_once_apart_and_its_retry_sends_the_same_bytes()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 503);
        var user = Events.NewUser();
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1), maxEvents: 2, maxWaitMs: 10_000);
        // Each payload is stored once per event (webhook_event_payloads), and so is the batch's body.
        var events = Enumerable.Range(0, 2)
            .Select(i => Events.EmailReceived(user) with { BodyPreview = new string((char)('a' + i), EventPayloads.SeparateFromChars + 100) + " — ✓" }).ToList();

        foreach (var e in events) await Dispatcher.PublishAsync(e);

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "a first attempt (503) and its retry");
        var requests = receiver.Requests;
        var batch = (await Dispatcher.DeliveriesAsync(s.Id)).Single(d => d.BatchSize is not null);
        Assert.Multiple(() =>
        {
            Assert.That(requests[1].Body, Is.EqualTo(requests[0].Body), "byte-identical retry");
            Assert.That(Parse(requests[0]).Events, Is.EquivalentTo(events.Select(e => WebhookPayload.Build(e))), "each event byte for byte");
            Assert.That(batch.Payload, Is.Null, "the large body is stored apart, once");
            Assert.That(Signatures.StandardVerifies(requests[1], s.Secret), Is.True);
        });
    }

    [Test]
    public async Task Max_wait_closes_a_partial_batch()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 100, maxWaitMs: 200);
        var events = Enumerable.Range(0, 3).Select(_ => Events.EmailReceived(user)).ToList();

        foreach (var e in events) await Dispatcher.PublishAsync(e);

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 3), Patience), Is.True,
            "three events, far fewer than max_events, are sent: max_wait closed their batch");
        Assert.That(receiver.Requests.SelectMany(r => Parse(r).Events).Select(IdOf), Is.EquivalentTo(events.Select(e => e.EventId)));
    }

    [Test]
    public async Task Max_bytes_splits_batches_and_no_body_passes_it()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        const int maxBytes = 2048;
        var events = Enumerable.Range(0, 6).Select(_ => Events.EmailReceived(user) with { BodyPreview = new string('x', 400) }).ToList();
        var single = Encoding.UTF8.GetByteCount(WebhookPayload.Build(events[0]));
        Assert.That(BatchBody.Size(3L * single, 3), Is.GreaterThan(maxBytes), "three events do not fit, so six need at least three batches");
        await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 100, maxWaitMs: 5000, maxBytes: maxBytes);

        foreach (var e in events) await Dispatcher.PublishAsync(e);

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 6), Patience), Is.True);
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(requests, Has.Count.GreaterThanOrEqualTo(3));
            Assert.That(requests.Select(r => r.Body.Length), Has.All.LessThanOrEqualTo(maxBytes));
            Assert.That(requests.SelectMany(r => Parse(r).Events).Select(IdOf), Is.EquivalentTo(events.Select(e => e.EventId)));
        });
    }

    [Test]
    public async Task Turning_batching_off_sends_the_events_waiting_for_a_batch_one_by_one()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        // The longest wait, so the change surely comes while the events wait.
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 100, maxWaitMs: 10_000);
        var events = Enumerable.Range(0, 3).Select(_ => Events.EmailReceived(user)).ToList();
        foreach (var e in events) await Dispatcher.PublishAsync(e);
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(s.Id)).Count(d => d.Status == DeliveryStatus.Batched && d.BatchId == null) == 3, Patience), Is.True,
            "the three events wait for their batch");
        Assert.That(receiver.Requests, Is.Empty, "nothing sent yet: the batch waits for max_wait");

        using var client = TestTokens.Client(user);
        var patch = await client.PatchAsJsonAsync($"/api/webhooks/{s.Id}", new { batch = (object?)null });
        Assert.That(patch.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await patch.Content.ReadFromJsonAsync<JsonObject>())!["batch"], Is.Null);

        Assert.That(await receiver.WaitForAsync(3, Patience), Is.True);
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            Assert.That(requests.Select(r => Encoding.UTF8.GetString(r.Body)), Is.EquivalentTo(events.Select(e => WebhookPayload.Build(e))),
                "each event alone, as an unbatched subscription gets it");
            Assert.That(requests.Select(r => r.Headers["x-webhook-event"]), Has.All.EqualTo("email.received"));
        });
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(s.Id)).All(d => d.Status == DeliveryStatus.Success && d.BatchId == null && d.BatchSize == null), Patience),
            Is.True, "three single deliveries, no batch");
    }

    [Test]
    public async Task A_new_max_events_applies_to_the_batches_formed_after_the_change()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 2, maxWaitMs: 10_000);
        var before = Enumerable.Range(0, 4).Select(_ => Events.EmailReceived(user)).ToList();
        foreach (var e in before) await Dispatcher.PublishAsync(e);
        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 4), Patience), Is.True);

        using var client = TestTokens.Client(user);
        var patch = await client.PatchAsJsonAsync($"/api/webhooks/{s.Id}", new { batch = new { max_events = 3, max_wait_ms = 10_000 } });
        Assert.That(patch.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var after = Enumerable.Range(0, 3).Select(_ => Events.EmailReceived(user)).ToList();
        foreach (var e in after) await Dispatcher.PublishAsync(e);

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 7), Patience), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests.Select(r => Parse(r).Events.Count), Is.EqualTo(new[] { 2, 2, 3 }),
                "two batches of the old max_events, then one of the new");
            Assert.That(Parse(receiver.Requests[2]).Events.Select(IdOf), Is.EquivalentTo(after.Select(e => e.EventId)));
        });
    }

    [Test]
    public async Task Events_a_dispatcher_left_waiting_for_a_batch_are_swept_into_one()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await BatchedAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), maxEvents: 100, maxWaitMs: 1000);
        var events = Enumerable.Range(0, 4).Select(_ => Events.EmailReceived(user)).ToList();
        // As a dispatcher killed after the fan-out committed leaves them: members waiting, in no process's memory.
        var db = Dispatcher.Services.GetRequiredService<NpgsqlDataSource>();
        await using (var insert = db.CreateCommand("""
            INSERT INTO webhook_deliveries (subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at)
            SELECT $1, 'email.received', e.id, e.payload, 'batched', 0, 4, now() - interval '1 minute'
            FROM unnest($2::uuid[], $3::text[]) AS e(id, payload)
            """))
        {
            insert.Parameters.Add(new() { Value = s.Id });
            insert.Parameters.Add(new() { Value = events.Select(e => e.EventId).ToArray() });
            insert.Parameters.Add(new() { Value = events.Select(e => WebhookPayload.Build(e)).ToArray() });
            await insert.ExecuteNonQueryAsync();
        }

        Assert.That(await Dispatcher.EventuallyAsync(() => Task.FromResult(EventsReceived(receiver) >= 4), Patience), Is.True, "the sweep formed their batch");
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "one batch");
            Assert.That(Parse(receiver.Requests[0]).Events.Select(IdOf), Is.EquivalentTo(events.Select(e => e.EventId)));
        });
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(s.Id)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True);
    }

    [Test]
    public async Task The_history_shows_which_events_went_in_which_batch()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.PostAsJsonAsync("/api/webhooks", new
        {
            url = receiver.Url,
            event_types = new[] { "email.received" },
            batch = new { max_events = 3, max_wait_ms = 10_000 },
        });
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Created), await created.Content.ReadAsStringAsync());
        var body = (await created.Content.ReadFromJsonAsync<JsonObject>())!;
        var id = body["id"]!.GetValue<Guid>();
        Assert.That(body["batch"]!.ToJsonString(), Is.EqualTo("""{"max_events":3,"max_wait_ms":10000,"max_bytes":262144}"""), "defaults filled in");
        var events = Enumerable.Range(0, 3).Select(_ => Events.EmailReceived(user)).ToList();

        foreach (var e in events) await Dispatcher.PublishAsync(e);

        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        var batchId = Guid.Parse(receiver.Requests[0].Headers["webhook-id"]);
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(id)).All(d => d.Status == DeliveryStatus.Success), Patience), Is.True);
        var list = (await client.GetFromJsonAsync<JsonObject>($"/api/webhooks/{id}/deliveries?limit=10"))!["data"]!.AsArray();
        var detail = (await client.GetFromJsonAsync<JsonObject>($"/api/webhooks/{id}/deliveries/{batchId}"))!;
        var batches = await client.GetAsync($"/api/webhooks/{id}/deliveries?event_type=batch");
        Assert.That(batches.StatusCode, Is.EqualTo(HttpStatusCode.OK), await batches.Content.ReadAsStringAsync());
        var batchesOnly = (await batches.Content.ReadFromJsonAsync<JsonObject>())!["data"]!.AsArray();
        Assert.Multiple(() =>
        {
            Assert.That(batchesOnly.Select(d => d!["id"]!.GetValue<Guid>()), Is.EqualTo(new[] { batchId }), "event_type=batch lists the batch alone");
            Assert.That(list, Has.Count.EqualTo(4), "three events and their batch");
            var members = list.Where(d => d!["batch_size"] is null).ToList();
            Assert.That(members.Select(d => d!["batch_id"]!.GetValue<Guid>()), Has.All.EqualTo(batchId), "each event names its batch");
            Assert.That(members.Select(d => d!["event_id"]!.GetValue<Guid>()), Is.EquivalentTo(events.Select(e => e.EventId)));
            var batch = list.Single(d => d!["batch_size"] is not null)!;
            Assert.That(batch["id"]!.GetValue<Guid>(), Is.EqualTo(batchId));
            Assert.That(batch["event_type"]!.GetValue<string>(), Is.EqualTo("batch"));
            Assert.That(batch["batch_size"]!.GetValue<int>(), Is.EqualTo(3));
            Assert.That(detail["batch_events"]!.AsArray().Select(e => e!["event_id"]!.GetValue<Guid>()), Is.EquivalentTo(events.Select(e => e.EventId)));
            Assert.That(detail["payload"]!.GetValue<string>(), Is.EqualTo(Encoding.UTF8.GetString(receiver.Requests[0].Body)), "the batch's payload is the exact body sent");
        });

        // A member's retry points at its batch.
        var memberId = list.First(d => d!["batch_size"] is null)!["id"]!.GetValue<Guid>();
        var retry = await client.PostAsync($"/api/webhooks/{id}/deliveries/{memberId}/retry", null);
        Assert.That(retry.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(await retry.Content.ReadAsStringAsync(), Does.Contain(batchId.ToString()));
    }

    [TestCase("""{"max_events": 0}""", "batch.max_events")]
    [TestCase("""{"max_events": 101}""", "batch.max_events")]
    [TestCase("""{"max_wait_ms": 100}""", "batch.max_events")]
    [TestCase("""{"max_events": 10, "max_wait_ms": 10001}""", "batch.max_wait_ms")]
    [TestCase("""{"max_events": 10, "max_bytes": 1023}""", "batch.max_bytes")]
    [TestCase("""{"max_events": 10, "max_bytes": 262145}""", "batch.max_bytes")]
    [TestCase("""{"max_events": 10, "size": 1}""", "batch.size")]
    [TestCase("10", "batch")]
    public async Task A_bad_batch_is_refused_naming_the_field_and_nothing_is_stored(string batch, string field)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var response = await client.PostAsync("/api/webhooks", new StringContent(
            $$"""{"url": "https://example.com/hook", "event_types": ["email.received"], "batch": {{batch}}}""", Encoding.UTF8, "application/json"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var problem = (await response.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.That(problem["errors"]!.AsObject().Select(p => p.Key), Does.Contain(field));
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(x => x.UserId == user)), Is.Zero);
    }

    [Test]
    public async Task A_batch_beside_a_template_is_refused_whichever_comes_first()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var both = await client.PostAsJsonAsync("/api/webhooks", new
        {
            url = "https://example.com/hook", event_types = new[] { "email.received" },
            batch = new { max_events = 10 }, template = new { builtin = "slack" },
        });
        Assert.That(both.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await both.Content.ReadFromJsonAsync<JsonObject>())!["errors"]!.AsObject().Select(p => p.Key), Does.Contain("batch"));

        var created = await client.PostAsJsonAsync("/api/webhooks", new
        {
            url = "https://example.com/hook", event_types = new[] { "email.received" }, template = new { builtin = "slack" },
        });
        var id = (await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!.GetValue<Guid>();
        var patch = await client.PatchAsJsonAsync($"/api/webhooks/{id}", new { batch = new { max_events = 10 } });
        Assert.That(patch.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await patch.Content.ReadFromJsonAsync<JsonObject>())!["errors"]!.AsObject().Select(p => p.Key), Does.Contain("batch"));
        var swap = await client.PatchAsJsonAsync($"/api/webhooks/{id}", new { batch = new { max_events = 10 }, template = (object?)null });
        Assert.That(swap.StatusCode, Is.EqualTo(HttpStatusCode.OK), "dropping the template in the same request is fine");
        Assert.That((await swap.Content.ReadFromJsonAsync<JsonObject>())!["batch"]!["max_events"]!.GetValue<int>(), Is.EqualTo(10));
    }
}
