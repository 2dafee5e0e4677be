using System.Net;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Delivery;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>The API endpoints that reach receivers or deliveries, with the dispatcher running on real RabbitMQ.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class DeliveryApiTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Test]
    public async Task Test_endpoint_sends_a_signed_test_event_and_reports_success_status_and_time()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(202);
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync(receiver.Url + "/hook", ["email.received"]);

        var response = await client.PostAsync($"/api/webhooks/{created.Id()}/test", null);

        var json = await response.JsonAsync();
        var request = receiver.Requests.Single();
        var secret = created["secret"]!.GetValue<string>();
        Assert.Multiple(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(json["success"]!.GetValue<bool>(), Is.True);
            Assert.That(json["status_code"]!.GetValue<int>(), Is.EqualTo(202));
            Assert.That(json["response_time_ms"]!.GetValue<long>(), Is.GreaterThanOrEqualTo(0));
            Assert.That(json["error"], Is.Null);
            Assert.That(request.Headers["x-webhook-event"], Is.EqualTo("webhook.test"));
            Assert.That(Signatures.LegacyVerifies(request, secret), Is.True);
            Assert.That(Signatures.StandardVerifies(request, secret), Is.True);
            Assert.That(await Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d => d.SubscriptionId == created.Id())), Is.Zero,
                "a test creates no delivery and no retries");
        });
    }

    [Test]
    public async Task Test_endpoint_against_a_closed_port_reports_a_clear_error_without_retries()
    {
        int port;
        await using (var closed = await TestReceiver.AnsweringAsync(200))
            port = new Uri(closed.Url).Port;
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync($"http://127.0.0.1:{port}/hook", ["email.received"]);

        var json = await (await client.PostAsync($"/api/webhooks/{created.Id()}/test", null)).JsonAsync();

        Assert.Multiple(async () =>
        {
            Assert.That(json["success"]!.GetValue<bool>(), Is.False);
            Assert.That(json["status_code"], Is.Null);
            Assert.That(json["error"]!.GetValue<string>(), Is.EqualTo("Connection refused"));
            Assert.That(await Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d => d.SubscriptionId == created.Id())), Is.Zero);
        });
    }

    [Test]
    public async Task Deliveries_are_listed_newest_first_with_a_status_filter_and_attempts_on_request()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 0);
        var first = Events.EmailReceived(user);
        await Dispatcher.PublishAsync(first);
        Assert.That(await receiver.WaitForAsync(1, Patience));
        var second = Events.EmailReceived(user);
        await Dispatcher.PublishAsync(second);
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(created.Id())).Count(d => d.CompletedAt != null) == 2, Patience));

        var all = await (await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries")).JsonAsync();
        var failed = await (await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries?status=failed&include_attempts=true")).JsonAsync();
        var tooMany = await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries?limit=101");
        var badStatus = await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries?status=lost");

        Assert.Multiple(async () =>
        {
            Assert.That(all["data"]!.AsArray().Select(d => d!["event_id"]!.GetValue<Guid>()), Is.EqualTo(new[] { second.EventId, first.EventId }));
            Assert.That(all["data"]![0]!["attempts"], Is.Null);
            Assert.That(all["limit"]!.GetValue<int>(), Is.EqualTo(50));
            var f = failed["data"]!.AsArray().Single()!;
            Assert.That(f["event_id"]!.GetValue<Guid>(), Is.EqualTo(first.EventId));
            Assert.That(f["status"]!.GetValue<string>(), Is.EqualTo("failed"));
            Assert.That(f["attempts"]!.AsArray().Single()!["status_code"]!.GetValue<int>(), Is.EqualTo(500));
            Assert.That(tooMany.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await tooMany.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "limit" }));
            Assert.That(badStatus.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        });
    }

    [Test]
    public async Task Delete_while_a_delivery_waits_for_its_retry_cancels_it_and_nothing_more_is_sent()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url + "/deleted", ["email.received"], retryCount: 3);
        // Control: a subscription that stays, failing the same event on the same schedule.
        await client.CreateAsync(receiver.Url + "/kept", ["email.received"], retryCount: 3);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await receiver.WaitForAsync(2, Patience, "/deleted"), Is.True);

        // Attempt 3 now waits 4 s in the broker.
        Assert.That((await client.DeleteAsync($"/api/webhooks/{created.Id()}")).StatusCode, Is.EqualTo(HttpStatusCode.NoContent));

        // Once the kept subscription's attempt 3 came, the deleted one's would have (allowing for
        // how much later its attempt 2 came).
        Assert.That(await receiver.WaitForAsync(3, Patience, "/kept"), Is.True, "control: attempt 3 of the kept subscription");
        var lag = receiver.To("/deleted")[1].ArrivedAt - receiver.To("/kept")[1].ArrivedAt;
        await receiver.WaitUntilAsync(receiver.To("/kept")[2].ArrivedAt + (lag > TimeSpan.Zero ? lag : TimeSpan.Zero) + TimeSpan.FromSeconds(1));
        var delivery = (await Dispatcher.DeliveriesAsync(created.Id())).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.To("/deleted"), Has.Count.EqualTo(2));
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Cancelled));
            Assert.That(delivery.Attempts, Has.Count.EqualTo(2));
        });
    }

    [Test]
    public async Task After_a_rotation_deliveries_carry_two_signatures_one_per_secret()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"]);
        var oldSecret = created["secret"]!.GetValue<string>();

        var rotation = await (await client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null)).JsonAsync();
        var newSecret = rotation["secret"]!.GetValue<string>();
        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        var request = receiver.Requests.Single();
        var signatures = request.Headers["webhook-signature"].Split(' ');
        Assert.Multiple(() =>
        {
            Assert.That(newSecret, Does.StartWith("whsec_").And.Not.EqualTo(oldSecret));
            Assert.That(rotation["previous_secret_expires_at"]!.GetValue<DateTimeOffset>(),
                Is.EqualTo(DateTimeOffset.UtcNow.AddHours(24)).Within(TimeSpan.FromMinutes(1)));
            Assert.That(signatures, Has.Length.EqualTo(2));
            Assert.That(signatures, Has.All.StartWith("v1,"));
            Assert.That(Signatures.StandardVerifies(request, newSecret), Is.True);
            Assert.That(Signatures.StandardVerifies(request, oldSecret), Is.True);
            Assert.That(Signatures.LegacyVerifies(request, newSecret), Is.True, "X-Webhook-Signature uses the new secret");
        });
    }

    [Test]
    public async Task A_failed_delivery_can_be_retried_as_a_new_round_and_other_statuses_cannot()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 500);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Failed, Patience));
        var deliveryId = (await Dispatcher.DeliveriesAsync(created.Id())).Single().Id;

        var retry = await client.PostAsync($"/api/webhooks/{created.Id()}/deliveries/{deliveryId}/retry", null);

        Assert.That(retry.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, Patience));
        var delivery = (await Dispatcher.DeliveriesAsync(created.Id())).Single();
        var again = await client.PostAsync($"/api/webhooks/{created.Id()}/deliveries/{deliveryId}/retry", null);
        var unknown = await client.PostAsync($"/api/webhooks/{created.Id()}/deliveries/{Guid.NewGuid()}/retry", null);
        Assert.Multiple(() =>
        {
            Assert.That(delivery.Attempts.Select(a => a.StatusCode), Is.EqualTo(new int?[] { 500, 200 }));
            Assert.That(receiver.Requests[1].Body, Is.EqualTo(receiver.Requests[0].Body), "the same bytes again");
            Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        });
    }

    [Test]
    public async Task Get_shows_statistics_after_deliveries()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"]);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(created.Id())).Count(d => d.Status == DeliveryStatus.Success) == 2, Patience));

        var stats = (await (await client.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync())["statistics"]!;

        Assert.Multiple(() =>
        {
            Assert.That(stats["total_deliveries"]!.GetValue<long>(), Is.EqualTo(2));
            Assert.That(stats["successful_deliveries"]!.GetValue<long>(), Is.EqualTo(2));
            Assert.That(stats["failed_deliveries"]!.GetValue<long>(), Is.EqualTo(0));
            Assert.That(stats["success_rate"]!.GetValue<double>(), Is.EqualTo(1.0));
            Assert.That(stats["last_success_at"], Is.Not.Null);
        });
    }
}
