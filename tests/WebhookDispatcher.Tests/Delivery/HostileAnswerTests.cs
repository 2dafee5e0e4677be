using System.Text;
using System.Text.Json.Nodes;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Odd or hostile receiver answers: exactly what is stored in <c>webhook_deliveries</c> and
/// <c>webhook_delivery_attempts</c> and shown by <c>GET /api/webhooks/{id}/deliveries?include_attempts=true</c>.
/// The status code alone decides the outcome; the body is kept as text for people (UTF-8, invalid
/// bytes and NUL as U+FFFD, at most 4096 characters, never half a surrogate pair).
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class HostileAnswerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static byte[] Bytes(params object[] parts) =>
        parts.SelectMany(p => p is string s ? Encoding.UTF8.GetBytes(s) : (byte[])p).ToArray();

    private static IEnumerable<TestCaseData> Answers()
    {
        TestCaseData Case(string name, int status, byte[] body, string? stored) => new TestCaseData(status, body, stored).SetName(name);

        yield return Case("A 200 with an empty body is a success with no body stored", 200, [], null);
        yield return Case("A 204 is a success with no body stored", 204, [], null);
        yield return Case("A 200 whose body says error is a success, and the body is stored as sent", 200,
            Bytes("""{"status":"error","message":"Internal failure"}"""), """{"status":"error","message":"Internal failure"}""");
        yield return Case("A 500 whose body says ok is a failure, and the body is stored as sent", 500,
            Bytes("""{"status":"ok"}"""), """{"status":"ok"}""");
        yield return Case("Invalid UTF-8 bytes are stored as U+FFFD, one per invalid byte", 200,
            Bytes("ok ", new byte[] { 0xFF, 0xFE }, " done"), "ok \uFFFD\uFFFD done");
        yield return Case("A NUL is stored as U+FFFD (PostgreSQL text cannot hold it)", 200,
            Bytes("ok", new byte[] { 0 }, "done"), "ok\uFFFDdone");
        yield return Case("A UTF-8-encoded lone surrogate is stored as U+FFFD per byte", 200,
            Bytes("a", new byte[] { 0xED, 0xA0, 0x80 }, "b"), "a\uFFFD\uFFFD\uFFFDb");
        yield return Case("A body cut inside a 4-byte character is stored with one U+FFFD at the end", 200,
            Bytes("ok ", new byte[] { 0xF0, 0x9F, 0x98 }), "ok \uFFFD");
        yield return Case("The 4096-character excerpt never ends inside a surrogate pair", 200,
            Bytes(new string('a', 4095), "😀 and more"), new string('a', 4095));
        yield return Case("A 4096-character excerpt ending on a whole pair keeps the pair", 200,
            Bytes(new string('a', 4094), "😀 and more"), new string('a', 4094) + "😀");
    }

    [TestCaseSource(nameof(Answers))]
    public async Task A_receiver_answer_is_stored_and_shown_exactly_and_only_its_status_decides(int status, byte[] body, string? stored)
    {
        await using var receiver = await TestReceiver.StartAsync(async (_, c) =>
        {
            c.Response.StatusCode = status;
            if (body.Length > 0)
            {
                c.Response.ContentLength = body.Length;
                await c.Response.Body.WriteAsync(body);
            }
        });
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, ["email.received"], retryCount: 0);
        var success = status is >= 200 and < 300;
        var expectedStatus = success ? DeliveryStatus.Success : DeliveryStatus.Failed;
        string? expectedError = success ? null : "HTTP 500 Internal Server Error";

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), expectedStatus, Patience), Is.True);
        var delivery = (await Dispatcher.DeliveriesAsync(created.Id())).Single();
        var attempt = delivery.Attempts.Single();
        var shown = (await (await client.GetAsync($"/api/webhooks/{created.Id()}/deliveries?include_attempts=true")).JsonAsync())["data"]!
            .AsArray().Single()!;
        var shownAttempt = shown["attempts"]!.AsArray().Single()!;
        Assert.Multiple(() =>
        {
            Assert.That(receiver.Requests, Has.Count.EqualTo(1));

            Assert.That(delivery.ResponseStatusCode, Is.EqualTo(status));
            Assert.That(delivery.ResponseBody, Is.EqualTo(stored));
            Assert.That(delivery.ErrorMessage, Is.EqualTo(expectedError));
            Assert.That(attempt.StatusCode, Is.EqualTo(status));
            Assert.That(attempt.Outcome, Is.EqualTo(success ? AttemptOutcome.Success : AttemptOutcome.HttpStatus));
            Assert.That(attempt.ResponseExcerpt, Is.EqualTo(stored));
            Assert.That(attempt.ErrorMessage, Is.EqualTo(expectedError));

            Assert.That(shown["status"]!.GetValue<string>(), Is.EqualTo(expectedStatus));
            Assert.That(shown["response_status_code"]!.GetValue<int>(), Is.EqualTo(status));
            Assert.That(Text(shown["response_body"]), Is.EqualTo(stored));
            Assert.That(Text(shown["error_message"]), Is.EqualTo(expectedError));
            Assert.That(shownAttempt["status_code"]!.GetValue<int>(), Is.EqualTo(status));
            Assert.That(shownAttempt["outcome"]!.GetValue<string>(), Is.EqualTo(attempt.Outcome));
            Assert.That(Text(shownAttempt["response_excerpt"]), Is.EqualTo(stored));
            Assert.That(Text(shownAttempt["error_message"]), Is.EqualTo(expectedError));
        });
    }

    private static string? Text(JsonNode? node) => node?.GetValue<string>();
}
