using System.Net;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

[Parallelizable(ParallelScope.All)]
public sealed class SubscriptionApiTests
{
    private const string Receiver = "https://hooks.example.com/notely";

    [Test]
    public async Task Event_types_lists_the_catalog_with_categories_and_descriptions()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var json = await (await client.GetAsync("/api/webhooks/event-types")).JsonAsync();

        var types = json["event_types"]!.AsArray();
        Assert.That(types, Has.Count.EqualTo(17));
        var emailReceived = types.Single(t => t!["name"]!.GetValue<string>() == "email.received")!;
        Assert.Multiple(() =>
        {
            Assert.That(emailReceived["category"]!.GetValue<string>(), Is.EqualTo("email"));
            Assert.That(emailReceived["description"]!.GetValue<string>(), Is.Not.Empty);
        });
    }

    [Test]
    public async Task Create_answers_201_with_location_defaults_and_the_secret_once()
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.PostJsonAsync("/api/webhooks",
            """{"url":"https://hooks.example.com/a","event_types":["email.received","task.completed"],"description":"inbox"}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        var json = await response.JsonAsync();
        var id = json.Id();
        Assert.Multiple(() =>
        {
            Assert.That(response.Headers.Location?.ToString(), Is.EqualTo($"/api/webhooks/{id}"));
            Assert.That(json["url"]!.GetValue<string>(), Is.EqualTo("https://hooks.example.com/a"));
            Assert.That(json["event_types"]!.AsArray().Select(e => e!.GetValue<string>()), Is.EqualTo(new[] { "email.received", "task.completed" }));
            Assert.That(json["description"]!.GetValue<string>(), Is.EqualTo("inbox"));
            Assert.That(json["retry_count"]!.GetValue<int>(), Is.EqualTo(3));
            Assert.That(json["timeout_seconds"]!.GetValue<int>(), Is.EqualTo(10));
            Assert.That(json["is_active"]!.GetValue<bool>(), Is.True);
            Assert.That(json["secret"]!.GetValue<string>(), Does.StartWith("whsec_"));
            Assert.That(Convert.FromBase64String(json["secret"]!.GetValue<string>()[6..]), Has.Length.GreaterThanOrEqualTo(32));
        });

        var got = await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(got["secret"], Is.Null, "GET never shows the secret");
            Assert.That(got.ToJsonString(), Does.Not.Contain(json["secret"]!.GetValue<string>()));
            Assert.That(got["statistics"]!["total_deliveries"]!.GetValue<long>(), Is.EqualTo(0));
            Assert.That(got["url"]!.GetValue<string>(), Is.EqualTo("https://hooks.example.com/a"));
        });
    }

    [Test]
    public async Task List_shows_only_the_callers_subscriptions_with_filters_and_pagination()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        using var other = TestTokens.Client(Events.NewUser());
        await other.CreateAsync(Receiver, ["email.received"]);
        var created = new List<JsonNode>();
        for (var i = 0; i < 5; i++)
            created.Add(await client.CreateAsync(Receiver, [i % 2 == 0 ? "email.received" : "task.completed"]));
        await client.PatchJsonAsync($"/api/webhooks/{created[0].Id()}", """{"is_active":false}""");

        var all = await (await client.GetAsync("/api/webhooks")).JsonAsync();
        var page = await (await client.GetAsync("/api/webhooks?limit=2&offset=2")).JsonAsync();
        var email = await (await client.GetAsync("/api/webhooks?event_type=email.received")).JsonAsync();
        var inactive = await (await client.GetAsync("/api/webhooks?is_active=false")).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(all["total"]!.GetValue<int>(), Is.EqualTo(5));
            Assert.That(all["data"]!.AsArray().Select(s => s!.Id()), Is.EquivalentTo(created.Select(c => c.Id())));
            Assert.That(all.ToJsonString(), Does.Not.Contain("secret"));
            Assert.That(page["data"]!.AsArray(), Has.Count.EqualTo(2));
            Assert.That(page["total"]!.GetValue<int>(), Is.EqualTo(5));
            Assert.That(page["limit"]!.GetValue<int>(), Is.EqualTo(2));
            Assert.That(page["offset"]!.GetValue<int>(), Is.EqualTo(2));
            Assert.That(email["total"]!.GetValue<int>(), Is.EqualTo(3));
            Assert.That(inactive["data"]!.AsArray().Single()!.Id(), Is.EqualTo(created[0].Id()));
        });
    }

    [TestCase("/api/webhooks?limit=0", "limit")]
    [TestCase("/api/webhooks?limit=101", "limit")]
    [TestCase("/api/webhooks?offset=-1", "offset")]
    [TestCase("/api/webhooks?event_type=nope", "event_type")]
    public async Task List_rejects_bad_query_parameters(string path, string field)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.GetAsync(path);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Does.Contain(field));
    }

    [Test]
    public async Task Patch_changes_only_the_given_fields()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync(Receiver, ["email.received"]);

        var response = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}",
            """{"event_types":["task.created"],"retry_count":0,"timeout_seconds":60,"description":null,"is_active":false}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var json = await response.JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(json["url"]!.GetValue<string>(), Is.EqualTo(Receiver));
            Assert.That(json["event_types"]!.AsArray().Single()!.GetValue<string>(), Is.EqualTo("task.created"));
            Assert.That(json["retry_count"]!.GetValue<int>(), Is.EqualTo(0));
            Assert.That(json["timeout_seconds"]!.GetValue<int>(), Is.EqualTo(60));
            Assert.That(json["is_active"]!.GetValue<bool>(), Is.False);
            Assert.That(json["description"], Is.Null);
            Assert.That(json["secret"], Is.Null);
        });
    }

    [Test]
    public async Task Delete_answers_204_and_the_subscription_is_gone()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync(Receiver, ["email.received"]);

        var response = await client.DeleteAsync($"/api/webhooks/{created.Id()}");

        Assert.Multiple(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
            Assert.That((await client.GetAsync($"/api/webhooks/{created.Id()}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await client.DeleteAsync($"/api/webhooks/{created.Id()}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await (await client.GetAsync("/api/webhooks")).JsonAsync())["total"]!.GetValue<int>(), Is.EqualTo(0));
        });
    }

    [Test]
    public async Task Requests_without_a_valid_token_answer_401()
    {
        using var anonymous = TestTokens.Client(null);
        using var forged = TestTokens.Client(null);
        forged.DefaultRequestHeaders.Authorization = new("Bearer", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");

        foreach (var client in new[] { anonymous, forged })
        {
            Assert.Multiple(async () =>
            {
                Assert.That((await client.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
                Assert.That((await client.GetAsync("/api/webhooks/event-types")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
                Assert.That((await client.PostJsonAsync("/api/webhooks", """{"url":"https://a.example","event_types":["email.received"]}""")).StatusCode,
                    Is.EqualTo(HttpStatusCode.Unauthorized));
            });
        }
    }

    private static IEnumerable<TestCaseData> OwnerOnlyRequests()
    {
        yield return new TestCaseData(HttpMethod.Get, "/api/webhooks/{0}", null).SetName("GET is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Patch, "/api/webhooks/{0}", """{"is_active":false}""").SetName("PATCH is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Delete, "/api/webhooks/{0}", null).SetName("DELETE is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Post, "/api/webhooks/{0}/test", null).SetName("test is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Get, "/api/webhooks/{0}/deliveries", null).SetName("deliveries is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Post, "/api/webhooks/{0}/rotate-secret", null).SetName("rotate-secret is 404 for another user's webhook");
        yield return new TestCaseData(HttpMethod.Post, "/api/webhooks/{0}/deliveries/{1}/retry", null).SetName("retry is 404 for another user's webhook");
    }

    [TestCaseSource(nameof(OwnerOnlyRequests))]
    public async Task Another_users_subscription_answers_404_like_a_missing_one(HttpMethod method, string template, string? body)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var owner = Events.NewUser();
        var ownerSubscription = await Dispatcher.SubscribeAsync(owner, receiver.Url, ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(owner));
        Assert.That(await Dispatcher.DeliveryReachesAsync(ownerSubscription.Id, DeliveryStatus.Failed, TimeSpan.FromSeconds(30)));
        var deliveryId = (await Dispatcher.DeliveriesAsync(ownerSubscription.Id)).Single().Id;
        using var intruder = TestTokens.Client(Events.NewUser());

        async Task<HttpResponseMessage> Send(Guid id, Guid delivery)
        {
            var request = new HttpRequestMessage(method, string.Format(template, id, delivery));
            if (body is not null) request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
            return await intruder.SendAsync(request);
        }

        var others = await Send(ownerSubscription.Id, deliveryId);
        var missing = await Send(Guid.NewGuid(), Guid.NewGuid());

        Assert.Multiple(async () =>
        {
            Assert.That(others.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(missing.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await others.JsonAsync())["title"]!.GetValue<string>(), Is.EqualTo((await missing.JsonAsync())["title"]!.GetValue<string>()));
        });
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.IgnoreQueryFilters().AsNoTracking().SingleAsync(s => s.Id == ownerSubscription.Id));
        var delivery = (await Dispatcher.DeliveriesAsync(ownerSubscription.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(stored.IsActive, Is.True);
            Assert.That(stored.DeletedAt, Is.Null);
            Assert.That(Dispatcher.Unseal(stored.Secret), Is.EqualTo(Dispatcher.Unseal(ownerSubscription.Secret)));
            Assert.That(delivery.Status, Is.EqualTo(DeliveryStatus.Failed));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "the intruder's test call reached nobody");
        });
    }

    [Test]
    public async Task The_OpenAPI_document_lists_every_endpoint_with_its_responses()
    {
        using var client = TestTokens.Client(null);

        var doc = await (await client.GetAsync("/openapi/v1.json")).JsonAsync();

        var paths = doc["paths"]!.AsObject();
        Assert.Multiple(() =>
        {
            Assert.That(paths.Select(p => p.Key), Is.SupersetOf(new[]
            {
                "/api/webhooks/event-types", "/api/webhooks", "/api/webhooks/{id}", "/api/webhooks/{id}/test",
                "/api/webhooks/{id}/deliveries", "/api/webhooks/{id}/rotate-secret", "/api/webhooks/{id}/deliveries/{deliveryId}/retry",
            }));
            Assert.That(paths["/api/webhooks"]!["post"]!["responses"]!.AsObject().Select(r => r.Key), Is.SupersetOf(new[] { "201", "400", "401", "413", "415" }));
            Assert.That(paths["/api/webhooks/{id}"]!["patch"]!["responses"]!.AsObject().Select(r => r.Key),
                Is.SupersetOf(new[] { "200", "400", "401", "404", "413", "415" }));
        });
    }
}
