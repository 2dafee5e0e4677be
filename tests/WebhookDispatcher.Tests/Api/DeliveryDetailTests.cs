using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using Npgsql;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Infrastructure;
using WebhookDispatcher.Tests.Portal;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// <c>GET /api/webhooks/{id}/deliveries/{deliveryId}</c> and the operator's
/// <c>GET /api/operator/deliveries/{deliveryId}</c>: a delivery with its attempts and its payload,
/// whether the payload is in the delivery row or stored once per event (docs/decisions/0009), and
/// a plain answer when the stored copy is gone.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class DeliveryDetailTests
{
    [Test]
    public async Task A_delivery_shows_its_payload_from_its_row_or_from_the_events_stored_copy_and_says_plainly_when_that_copy_is_gone()
    {
        var user = Events.NewUser();
        var subscription = await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called", ["email.received"]);
        var small = Events.EmailReceived(user);
        var large = Events.EmailReceived(user) with { BodyPreview = new string('y', EventPayloads.SeparateFromChars + 500) };
        var smallId = await FanOutAsync(small);
        var largeId = await FanOutAsync(large);
        Assert.That(await InlinePayloadAsync(largeId), Is.Null, "the large payload is not in its delivery row, so the detail must look elsewhere");
        using var client = TestTokens.Client(user);

        var smallDetail = await DetailAsync(client, subscription.Id, smallId);
        var largeDetail = await DetailAsync(client, subscription.Id, largeId);
        Assert.Multiple(() =>
        {
            Assert.That(smallDetail["payload"]!.GetValue<string>(), Is.EqualTo(WebhookPayload.Build(small)), "a payload in the delivery row");
            Assert.That(largeDetail["payload"]!.GetValue<string>(), Is.EqualTo(WebhookPayload.Build(large)), "a payload stored once per event");
            Assert.That(largeDetail["payload_unavailable"], Is.Null);
            Assert.That(largeDetail["event_id"]!.GetValue<Guid>(), Is.EqualTo(large.EventId));
            Assert.That(largeDetail["attempts"]!.AsArray(), Is.Not.Null, "with its attempts");
        });

        // The list never carries payloads (up to 256 KiB each): the detail does.
        var list = await (await client.GetAsync($"/api/webhooks/{subscription.Id}/deliveries?include_attempts=true")).JsonAsync();
        Assert.That(list["data"]!.AsArray().Select(d => d!.AsObject().ContainsKey("payload")), Is.All.False);

        // The stored copy removed (retention, or by hand): the detail still answers, and says so.
        await Dispatcher.QueryAsync(db => db.Database.ExecuteSqlInterpolatedAsync($"DELETE FROM webhook_event_payloads WHERE event_id = {large.EventId}"));
        var gone = await DetailAsync(client, subscription.Id, largeId);
        Assert.Multiple(() =>
        {
            Assert.That(gone["payload"], Is.Null);
            Assert.That(gone["payload_unavailable"]!.GetValue<string>(), Does.Contain("no longer stored"));
            Assert.That(gone["id"]!.GetValue<Guid>(), Is.EqualTo(largeId));
        });

        // The operator's detail reads payloads the same way.
        using var operatorSession = await OperatorSessionAsync();
        var seen = await (await operatorSession.GetAsync($"/api/operator/deliveries/{smallId}")).JsonAsync();
        var seenGone = await (await operatorSession.GetAsync($"/api/operator/deliveries/{largeId}")).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(seen["delivery"]!["payload"]!.GetValue<string>(), Is.EqualTo(WebhookPayload.Build(small)));
            Assert.That(seen["user_id"]!.GetValue<string>(), Is.EqualTo(user));
            Assert.That(seenGone["delivery"]!["payload"], Is.Null);
            Assert.That(seenGone["delivery"]!["payload_unavailable"]!.GetValue<string>(), Does.Contain("no longer stored"));
        });
    }

    [Test]
    public async Task The_operator_detail_reads_a_payload_stored_once_per_event()
    {
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/never-called", ["email.received"]);
        var large = Events.EmailReceived(user) with { BodyPreview = new string('z', 30_000) };
        var deliveryId = await FanOutAsync(large);

        using var operatorSession = await OperatorSessionAsync();
        var seen = await (await operatorSession.GetAsync($"/api/operator/deliveries/{deliveryId}")).JsonAsync();

        Assert.That(seen["delivery"]!["payload"]!.GetValue<string>(), Is.EqualTo(WebhookPayload.Build(large)));
    }

    [Test]
    public async Task Another_users_delivery_or_a_delivery_of_another_subscription_answers_404_like_a_missing_one()
    {
        var (user, other) = (Events.NewUser(), Events.NewUser());
        var mine = await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/mine", ["email.received"]);
        var second = await Dispatcher.SubscribeAsync(user, "http://127.0.0.1:9/second", ["email.received"]);
        var evt = Events.EmailReceived(user);
        var work = await Dispatcher.Services.GetRequiredService<FanOutStore>().FanOutAsync([Of(evt)], Events.MiddayUtc, CancellationToken.None);
        var deliveryOfMine = work.Single(w => w.SubscriptionId == mine.Id).DeliveryId;
        using var owner = TestTokens.Client(user);
        using var stranger = TestTokens.Client(other);

        Assert.Multiple(async () =>
        {
            Assert.That((await owner.GetAsync($"/api/webhooks/{mine.Id}/deliveries/{deliveryOfMine}")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((await stranger.GetAsync($"/api/webhooks/{mine.Id}/deliveries/{deliveryOfMine}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound),
                "another user's");
            Assert.That((await owner.GetAsync($"/api/webhooks/{second.Id}/deliveries/{deliveryOfMine}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound),
                "a delivery of another subscription, asked under this one");
            Assert.That((await owner.GetAsync($"/api/webhooks/{mine.Id}/deliveries/{Guid.NewGuid()}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await owner.GetAsync($"/api/webhooks/{mine.Id}/deliveries/not-a-uuid")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        });
    }

    /// <summary>Stores the event's delivery for its user's one subscription as the fan-out does; returns the delivery's id.</summary>
    private static async Task<Guid> FanOutAsync(EmailReceived evt) =>
        (await Dispatcher.Services.GetRequiredService<FanOutStore>().FanOutAsync([Of(evt)], Events.MiddayUtc, CancellationToken.None)).Single().DeliveryId;

    private static FanOutEvent Of(EmailReceived evt) => new(evt.EventId, evt.UserId, "email.received", WebhookPayload.Build(evt));

    private static async Task<JsonNode> DetailAsync(HttpClient client, Guid subscriptionId, Guid deliveryId)
    {
        var response = await client.GetAsync($"/api/webhooks/{subscriptionId}/deliveries/{deliveryId}");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return await response.JsonAsync();
    }

    private static async Task<string?> InlinePayloadAsync(Guid deliveryId)
    {
        await using var db = await Dispatcher.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SELECT payload FROM webhook_deliveries WHERE id = $1", db);
        command.Parameters.Add(new() { Value = deliveryId });
        return await command.ExecuteScalarAsync() as string;
    }

    /// <summary>An operator's portal session on the shared dispatcher (its operator scope is the default, webhooks:operator).</summary>
    private static async Task<HttpClient> OperatorSessionAsync()
    {
        using var staff = TestTokens.Client(null);
        staff.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AuthExtensions.CreateDevelopmentToken(
            new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = TestTokens.SigningKey },
            "ops-detail", TimeSpan.FromHours(1), "webhooks:operator"));
        var link = await (await staff.PostAsJsonAsync("/api/operator/portal-sessions", new { })).JsonAsync();
        var opened = await (await TestTokens.Client(null).PostAsJsonAsync("/portal/session",
            new { token = PortalHarness.TokenOf(link["url"]!.GetValue<string>()) })).JsonAsync();
        var session = TestTokens.Client(null);
        session.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opened["session_token"]!.GetValue<string>());
        return session;
    }
}
