using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>Malformed or hostile requests get a 4xx with problem details, never a 500, and change nothing.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class HostileInputTests
{
    private const string Valid = """{"url":"https://hooks.example.com/h","event_types":["task.created"]}""";

    private static IEnumerable<TestCaseData> BadBodies()
    {
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"retry_count":"x","retry_count":5}""", "body")
            .SetName("A duplicate key is refused rather than last-one-wins");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"description":"a\ud800b"}""", "description")
            .SetName("A lone surrogate escape is refused, naming its field");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"filter":"\ud800"}""", "filter")
            .SetName("A lone surrogate escape where a filter object is due is refused, naming its field");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created","\udfff"]}""", "event_types[1]")
            .SetName("A lone surrogate escape in a list is refused, naming its item");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"headers":{"X-Key":"a\ud800"}}""", "headers.X-Key")
            .SetName("A lone surrogate escape in a header value is refused, naming the header");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"\ud800":1}""", "body")
            .SetName("A lone surrogate escape in a property name is refused");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"description":"a\u0000b"}""", "description")
            .SetName("A NUL in the description is refused");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/a\u0000","event_types":["task.created"]}""", "url")
            .SetName("A NUL in the URL is refused");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["email.received"],"filter":{"data.subject":{"$contains":"\u0000"}}}""",
                "filter.data.subject.$contains")
            .SetName("A NUL in a filter's operand is refused, naming it");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["email.received"],"filter":{"data.subject":"a\u0000"}}""", "filter.data.subject")
            .SetName("A NUL in a filter's value is refused, naming it");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["email.received"],"template":{"liquid":"{{ id }}\u0000"}}""", "template.liquid")
            .SetName("A NUL in a template is refused, naming it");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],"headers":{"X-Key":"a\u0000"}}""", "headers.X-Key")
            .SetName("A NUL in a header value is refused, naming the header");
        yield return new TestCaseData("""{"url":"  https://hooks.example.com/h  ","event_types":["task.created"]}""", "url")
            .SetName("A URL with spaces is refused");
        yield return new TestCaseData("""{"url":"https://@hooks.example.com/h","event_types":["task.created"]}""", "url")
            .SetName("A URL with an empty user info is refused");
        yield return new TestCaseData("""{"url":"https://hooks.example.com:0/h","event_types":["task.created"]}""", "url")
            .SetName("A URL with port 0 is refused");
        yield return new TestCaseData("""{"url":"https://hooks.example.com/h","event_types":["task.created"],}""", "body")
            .SetName("A trailing comma is refused");
        yield return new TestCaseData("", "body").SetName("An empty body is refused");
        yield return new TestCaseData(new string('[', 100) + new string(']', 100), "body").SetName("Deep nesting is refused");
    }

    [TestCaseSource(nameof(BadBodies))]
    public async Task Bad_bodies_answer_400_naming_the_problem_and_store_nothing(string json, string field)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);

        var response = await client.PostJsonAsync("/api/webhooks", json);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { field }));
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.Zero);
    }

    [TestCase("text/plain")]
    [TestCase("application/json; charset=bogus")]
    [TestCase("application/json; charset=iso-8859-1")]
    public async Task Bodies_that_are_not_UTF8_JSON_answer_415(string contentType)
    {
        using var client = TestTokens.Client(Events.NewUser());
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(Valid));
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);

        var response = await client.PostAsync("/api/webhooks", content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
    }

    [Test]
    public async Task Invalid_UTF8_bytes_answer_400()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var bytes = Encoding.UTF8.GetBytes(Valid.Replace("hooks", "ho\u00ffks")).Select(b => b == 0xC3 ? (byte)0xFF : b).ToArray();
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");

        var response = await client.PostAsync("/api/webhooks", content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var problem = await response.JsonAsync();
        Assert.That(problem.ErrorFields(), Is.EqualTo(new[] { "url" }));
        Assert.That(problem["errors"]!["url"]![0]!.GetValue<string>(), Does.Contain("not UTF-8"));
    }

    /// <summary>Every endpoint that reads a JSON body checks its strings once, before any handler reads them, including the one that needs no credential.</summary>
    [TestCase("POST", "/portal/session", """{"token":"\ud800"}""", "token", false)]
    [TestCase("POST", "/api/webhooks/portal-sessions", """{"user_id":"\ud800"}""", "user_id", true)]
    [TestCase("PATCH", "/api/webhooks/{id}", """{"filter":"\ud800"}""", "filter", true)]
    [TestCase("POST", "/api/webhooks/{id}/recover", """{"since":"\ud800"}""", "since", true)]
    public async Task A_lone_surrogate_escape_answers_400_naming_the_field_on_every_JSON_endpoint(string method, string path, string json, string field,
        bool signedIn)
    {
        var user = Events.NewUser();
        using var owner = TestTokens.Client(user);
        var id = (await owner.CreateAsync("https://hooks.example.com/surrogate", ["task.created"])).Id();
        using var client = TestTokens.Client(signedIn ? user : null);

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path.Replace("{id}", id.ToString()))
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        });

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { field }));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.SingleAsync(s => s.Id == id));
        Assert.That(stored.Filter, Is.Null, "nothing changed");
    }

    [Test]
    public async Task A_huge_event_types_list_is_refused_quickly_with_a_short_answer()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var json = """{"url":"https://hooks.example.com/h","event_types":[""" + string.Join(',', Enumerable.Repeat("\"x\"", 10_000)) + "]}";
        var clock = Stopwatch.StartNew();

        var response = await client.PostJsonAsync("/api/webhooks", json);

        var body = await response.Content.ReadAsStringAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "event_types" }));
            Assert.That(body.Length, Is.LessThan(2000));
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "bounded work, with room for a busy machine");
        });
    }

    [Test]
    public async Task Many_bad_items_are_reported_a_few_at_a_time()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var json = """{"url":"https://hooks.example.com/h","event_types":[""" + string.Join(',', Enumerable.Range(0, 90).Select(i => $"\"bad{i}\"")) + "]}";

        var problem = await (await client.PostJsonAsync("/api/webhooks", json)).JsonAsync();

        Assert.That(problem["errors"]!["event_types"]!.AsArray(), Has.Count.InRange(1, 5));
    }

    [TestCase("/api/webhooks?limit=abc", new[] { "limit" })]
    [TestCase("/api/webhooks?limit=1.5", new[] { "limit" })]
    [TestCase("/api/webhooks?limit=1&limit=2", new[] { "limit" })]
    [TestCase("/api/webhooks?offset=2147483648", new[] { "offset" })]
    [TestCase("/api/webhooks?is_active=maybe", new[] { "is_active" })]
    [TestCase("/api/webhooks?limit=-1&offset=-1&event_type=x&is_active=1", new[] { "limit", "offset", "event_type", "is_active" })]
    public async Task Bad_query_values_answer_400_naming_each_parameter(string path, string[] fields)
    {
        using var client = TestTokens.Client(Events.NewUser());

        var response = await client.GetAsync(path);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(fields));
    }

    [Test]
    public async Task Bad_delivery_query_values_answer_400_naming_each_parameter()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync("https://hooks.example.com/h", ["task.created"]);

        var response = await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries?include_attempts=yes&status=lost&limit=0");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "include_attempts", "status", "limit" }));
    }

    private static string Token(Dictionary<string, object> claims) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Issuer = "notely",
        Audience = "webhook-dispatcher",
        Claims = claims,
        Expires = DateTime.UtcNow.AddHours(1),
        SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(TestTokens.SigningKey)), SecurityAlgorithms.HmacSha256),
    });

    private static IEnumerable<TestCaseData> BadSubjects()
    {
        yield return new TestCaseData(new Dictionary<string, object> { ["name"] = "no sub" }).SetName("A token without sub is 401");
        yield return new TestCaseData(new Dictionary<string, object> { ["sub"] = "" }).SetName("A token with an empty sub is 401");
        yield return new TestCaseData(new Dictionary<string, object> { ["sub"] = " u1 " }).SetName("A token with a padded sub is 401");
        yield return new TestCaseData(new Dictionary<string, object> { ["sub"] = new string('u', 257) }).SetName("A token with a 257-character sub is 401");
        yield return new TestCaseData(new Dictionary<string, object> { ["sub"] = "u\u0000x" }).SetName("A token with a NUL in sub is 401");
    }

    [TestCaseSource(nameof(BadSubjects))]
    public async Task Tokens_without_a_usable_subject_are_rejected(Dictionary<string, object> claims)
    {
        using var client = TestTokens.Client(null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(claims));

        var response = await client.PostJsonAsync("/api/webhooks", Valid);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task A_deleted_subscription_cannot_be_patched_back_and_never_receives_events()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url + "/deleted", ["email.received"]);
        // Control: a live subscription for the same event; the fan-out writes its delivery in the
        // statement that would write the deleted one's.
        var live = await client.CreateAsync(receiver.Url + "/live", ["email.received"]);
        await client.DeleteAsync($"/api/webhooks/{created.Id()}");

        var patch = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", """{"is_active":true}""");
        // What a PATCH racing the DELETE could have left behind before the fix.
        await Dispatcher.QueryAsync(db => db.Subscriptions.IgnoreQueryFilters().Where(s => s.Id == created.Id())
            .ExecuteUpdateAsync(u => u.SetProperty(s => s.IsActive, true)));
        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(live.Id(), DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True,
            "control: the live subscription got the event");
        Assert.Multiple(async () =>
        {
            Assert.That(patch.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(receiver.To("/deleted"), Is.Empty);
            Assert.That(await Dispatcher.QueryAsync(db => db.Deliveries.CountAsync(d => d.SubscriptionId == created.Id())), Is.Zero);
        });
    }

    [Test]
    public async Task An_empty_patch_changes_nothing()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync("https://hooks.example.com/h", ["task.created"]);

        var response = await client.PatchJsonAsync($"/api/webhooks/{created.Id()}", "{}");

        var json = await response.JsonAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(json["updated_at"]!.GetValue<DateTimeOffset>(), Is.EqualTo(created["updated_at"]!.GetValue<DateTimeOffset>()));
    }

    [Test]
    public async Task Two_rotations_in_a_row_both_succeed_and_the_second_secret_signs_beside_the_first_new_one()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync("https://hooks.example.com/h", ["task.created"]);

        var first = await client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null);
        var second = await client.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null);

        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == created.Id()));
        Assert.Multiple(async () =>
        {
            Assert.That(first.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(second.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(Dispatcher.Unseal(stored.Secret), Is.EqualTo((await second.JsonAsync())["secret"]!.GetValue<string>()));
            Assert.That(Dispatcher.Unseal(stored.PreviousSecret), Is.EqualTo((await first.JsonAsync())["secret"]!.GetValue<string>()));
        });
    }

    [Test]
    public async Task A_retried_delivery_that_fails_again_is_counted_once()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(500);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 0);
        await Dispatcher.PublishAsync(Events.EmailReceived(user));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Failed, TimeSpan.FromSeconds(30)));
        var deliveryId = (await Dispatcher.DeliveriesAsync(created.Id())).Single().Id;

        await client.PostAsync($"/api/webhooks/{created.Id()}/deliveries/{deliveryId}/retry", null);

        Assert.That(await receiver.WaitForAsync(2, TimeSpan.FromSeconds(30)));
        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Failed, TimeSpan.FromSeconds(30)));
        var stats = (await (await client.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync())["statistics"]!;
        Assert.Multiple(() =>
        {
            Assert.That(stats["total_deliveries"]!.GetValue<long>(), Is.EqualTo(1));
            Assert.That(stats["failed_deliveries"]!.GetValue<long>(), Is.EqualTo(1));
        });
    }
}
