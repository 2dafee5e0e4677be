using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// <c>Idempotency-Key</c> on <c>POST /api/webhooks</c> and <c>…/rotate-secret</c>: a repeated
/// create makes no second subscription and a repeated rotation no second rotation, on any replica,
/// whatever the limits; another request with the same key is refused.
/// </summary>
public sealed class IdempotencyKeyTests
{
    private const string Body = """{"url":"https://hooks.example.com/idempotent","event_types":["email.received"]}""";

    private IsolatedDispatcher _one = null!, _two = null!;

    [OneTimeSetUp]
    public async Task StartReplicas()
    {
        // Two API replicas on the run's database; at most 2 creates a minute, so a repeat past the rate still answers.
        var settings = new Dictionary<string, string?> { ["Dispatcher:Workers"] = "false", ["Subscriptions:CreatesPerMinute"] = "2" };
        var started = await Task.WhenAll(IsolatedDispatcher.StartAsync(settings, sharedBroker: true), IsolatedDispatcher.StartAsync(settings, sharedBroker: true));
        (_one, _two) = (started[0], started[1]);
    }

    [OneTimeTearDown]
    public async Task StopReplicas()
    {
        foreach (var api in new[] { _one, _two })
            if (api is not null) await api.DisposeAsync();
    }

    private static async Task<HttpResponseMessage> CreateAsync(HttpClient client, string key, string body = Body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/webhooks") { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") };
        request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
        return await client.SendAsync(request);
    }

    private static Task<int> RowsAsync(string user) =>
        Dispatcher.QueryAsync(db => db.Subscriptions.IgnoreQueryFilters().CountAsync(s => s.UserId == user));

    [Test]
    public async Task A_create_repeated_with_its_key_answers_the_same_subscription_and_secret_and_stores_one()
    {
        var user = Events.NewUser();
        using var one = _one.Client(user);
        using var two = _two.Client(user);
        var key = Guid.NewGuid().ToString();

        var first = await CreateAsync(one, key);
        // Concurrently, through both replicas, past the rate of 2 a minute.
        var repeats = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => CreateAsync(i % 2 == 0 ? one : two, key)));

        Assert.That(first.StatusCode, Is.EqualTo(HttpStatusCode.Created), await first.Content.ReadAsStringAsync());
        var made = await first.JsonAsync();
        foreach (var repeat in repeats)
        {
            Assert.That(repeat.StatusCode, Is.EqualTo(HttpStatusCode.Created), await repeat.Content.ReadAsStringAsync());
            var again = await repeat.JsonAsync();
            Assert.That(again["id"]!.GetValue<string>(), Is.EqualTo(made["id"]!.GetValue<string>()));
            Assert.That(again["secret"]!.GetValue<string>(), Is.EqualTo(made["secret"]!.GetValue<string>()), "the secret the first answer carried");
        }
        Assert.That(await RowsAsync(user), Is.EqualTo(1));
        // Whitespace does not make another request.
        Assert.That((await CreateAsync(one, key, Body.Replace(",", ", "))).StatusCode, Is.EqualTo(HttpStatusCode.Created));
        Assert.That(await RowsAsync(user), Is.EqualTo(1));
    }

    [Test]
    public async Task The_same_key_with_another_body_answers_422_and_stores_nothing_while_another_user_may_use_it()
    {
        var user = Events.NewUser();
        using var client = _one.Client(user);
        var key = "order-42";
        Assert.That((await CreateAsync(client, key)).StatusCode, Is.EqualTo(HttpStatusCode.Created));

        var other = await CreateAsync(client, key, Body.Replace("idempotent", "elsewhere"));

        Assert.That(other.StatusCode, Is.EqualTo(HttpStatusCode.UnprocessableEntity), await other.Content.ReadAsStringAsync());
        Assert.That((await other.JsonAsync())["field"]!.GetValue<string>(), Is.EqualTo("Idempotency-Key"));
        Assert.That(await RowsAsync(user), Is.EqualTo(1));
        var stranger = Events.NewUser();
        using var strangers = _two.Client(stranger);
        Assert.That((await CreateAsync(strangers, key, Body.Replace("idempotent", "elsewhere"))).StatusCode, Is.EqualTo(HttpStatusCode.Created),
            "keys are per user");
    }

    [Test]
    public async Task A_repeat_after_the_subscription_was_deleted_answers_409_and_makes_none()
    {
        var user = Events.NewUser();
        using var client = _one.Client(user);
        var made = await (await CreateAsync(client, "k-deleted")).JsonAsync();
        Assert.That((await client.DeleteAsync($"/api/webhooks/{made["id"]!.GetValue<string>()}")).StatusCode, Is.EqualTo(HttpStatusCode.NoContent));

        var repeat = await CreateAsync(client, "k-deleted");

        Assert.That(repeat.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await repeat.Content.ReadAsStringAsync());
        Assert.That(await RowsAsync(user), Is.EqualTo(1), "only the deleted one");
    }

    [Test]
    public async Task A_create_repeated_after_its_secret_was_rotated_answers_409_and_shows_no_secret()
    {
        var user = Events.NewUser();
        using var client = _one.Client(user);
        var made = await (await CreateAsync(client, "k-rotated")).JsonAsync();
        Assert.That((await client.PostAsync($"/api/webhooks/{made["id"]!.GetValue<string>()}/rotate-secret", null)).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        var repeat = await CreateAsync(client, "k-rotated");

        Assert.That(repeat.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await repeat.Content.ReadAsStringAsync());
        Assert.That(await repeat.Content.ReadAsStringAsync(), Does.Not.Contain("whsec_"));
        Assert.That(await RowsAsync(user), Is.EqualTo(1));
    }

    [TestCase("")]
    [TestCase("has space")]
    [TestCase("tab\there")]
    public async Task A_key_that_is_not_1_to_255_visible_ASCII_characters_answers_400_naming_the_header(string key)
    {
        var user = Events.NewUser();
        using var client = _one.Client(user);

        var response = await CreateAsync(client, key);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "Idempotency-Key" }));
        Assert.That(await RowsAsync(user), Is.Zero);
    }

    [Test]
    public async Task A_key_of_256_characters_answers_400()
    {
        using var client = _one.Client(Events.NewUser());
        Assert.That((await CreateAsync(client, new string('k', 256))).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    /// <summary>
    /// Sends <paramref name="path"/> over a raw connection with the key as two header lines (what
    /// <c>curl -H … -H …</c> sends; HttpClient would join them into one line), and returns the
    /// answer's status line and body.
    /// </summary>
    private async Task<(int Status, string Body)> PostWithTwoKeyLinesAsync(string user, string path, string body)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(_one.BaseAddress.Host, _one.BaseAddress.Port);
        await using var stream = tcp.GetStream();
        var content = System.Text.Encoding.UTF8.GetBytes(body);
        var head = $"POST {path} HTTP/1.1\r\nHost: {_one.BaseAddress.Authority}\r\nAuthorization: Bearer {TestTokens.For(user)}\r\n" +
                   $"Content-Type: application/json\r\nContent-Length: {content.Length}\r\nIdempotency-Key: first\r\nIdempotency-Key: second\r\n" +
                   "Connection: close\r\n\r\n";
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(head));
        await stream.WriteAsync(content);
        using var reader = new StreamReader(stream);
        var answer = await reader.ReadToEndAsync();
        var status = int.Parse(answer.Split(' ', 3)[1], System.Globalization.CultureInfo.InvariantCulture);
        return (status, answer[(answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
    }

    [Test]
    public async Task Two_key_header_lines_answer_400_naming_the_header_and_create_nothing()
    {
        var user = Events.NewUser();

        var (status, body) = await PostWithTwoKeyLinesAsync(user, "/api/webhooks", Body);

        Assert.That(status, Is.EqualTo(400), body);
        Assert.That(body, Does.Contain("\"Idempotency-Key\"").And.Contain("one"), body);
        Assert.That(await RowsAsync(user), Is.Zero);
    }

    [Test]
    public async Task Two_key_header_lines_on_a_rotation_answer_400_and_rotate_nothing()
    {
        var user = Events.NewUser();
        using var client = _one.Client(user);
        var made = await (await CreateAsync(client, Guid.NewGuid().ToString())).JsonAsync();
        var id = made["id"]!.GetValue<string>();

        var (status, body) = await PostWithTwoKeyLinesAsync(user, $"/api/webhooks/{id}/rotate-secret", "");

        Assert.That(status, Is.EqualTo(400), body);
        Assert.That(body, Does.Contain("\"Idempotency-Key\""), body);
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.IgnoreQueryFilters().SingleAsync(s => s.Id == Guid.Parse(id)));
        Assert.That(stored.PreviousSecret, Is.Null, "not rotated");
    }

    private static async Task<HttpResponseMessage> RotateAsync(HttpClient client, string id, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/webhooks/{id}/rotate-secret");
        request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
        return await client.SendAsync(request);
    }

    [Test]
    public async Task A_rotation_repeated_with_its_key_answers_the_same_secret_and_keeps_the_first_secrets_grace()
    {
        var user = Events.NewUser();
        using var one = _one.Client(user);
        using var two = _two.Client(user);
        var made = await (await CreateAsync(one, Guid.NewGuid().ToString())).JsonAsync();
        var id = made["id"]!.GetValue<string>();
        var key = Guid.NewGuid().ToString();

        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => RotateAsync(i % 2 == 0 ? one : two, id, key)));

        foreach (var answer in answers)
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        var secrets = new HashSet<string>();
        foreach (var answer in answers) secrets.Add((await answer.JsonAsync())["secret"]!.GetValue<string>());
        Assert.That(secrets, Has.Count.EqualTo(1), "one rotation, the same secret in every answer");
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.UserId == user));
        var sealer = Dispatcher.Services.GetRequiredService<WebhookDispatcher.Security.SecretSealer>();
        Assert.That(sealer.Unseal(stored.PreviousSecret!), Is.EqualTo(made["secret"]!.GetValue<string>()),
            "the first secret still signs beside the new one: a repeat did not rotate again");

        // Rotated again without the key: the key's secret is no longer current.
        Assert.That((await one.PostAsync($"/api/webhooks/{id}/rotate-secret", null)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await RotateAsync(two, id, key)).StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        // A key is one request's: a rotation's key sent with a create is refused.
        Assert.That((await RotateAsync(one, id, "k-other-request")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await CreateAsync(one, "k-other-request")).StatusCode, Is.EqualTo(HttpStatusCode.UnprocessableEntity));
    }
}
