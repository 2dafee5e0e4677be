using System.Text.Json.Nodes;
using Notely.Events;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// What a publisher's mistake does (docs/publishing.md): the message is parked in the fan-out
/// endpoint's <c>_error</c> queue with a readable <c>MT-Fault-Message</c>, at once (no redelivery:
/// it can never succeed), and the next good event is delivered.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class BadMessageTests
{
    private const string ErrorQueue = "webhook-fan-out_error";
    private static readonly EventTypeInfo EmailReceived = EventCatalog.For<EmailReceived>();

    public static IEnumerable<TestCaseData> BadMessages()
    {
        yield return Case("a malformed envelope (JSON cut short)", (user, id) => RawEvents.Envelope(EmailReceived, Message(user), id)[..60],
            "reached end of data");
        yield return Case("an unknown message type", (user, id) => RawEvents.Envelope(EmailReceived, Message(user), id)
            .Replace("Notely.Events:EmailReceived", "Notely.Events:EmailArchived"), "urn:message:Notely.Events:EmailArchived");
        yield return Case("an envelope without messageType", (user, id) =>
            new JsonObject { ["messageId"] = id.ToString(), ["message"] = Message(user) }.ToJsonString(), "names no messageType");
        yield return Case("an envelope without message", (user, id) =>
            new JsonObject { ["messageId"] = id.ToString(), ["messageType"] = new JsonArray("urn:message:Notely.Events:EmailReceived") }.ToJsonString(),
            "The envelope has no message: send the event's fields as a JSON object in \"message\"");
        yield return Case("an envelope whose message is null", (user, id) =>
            new JsonObject { ["messageId"] = id.ToString(), ["messageType"] = new JsonArray("urn:message:Notely.Events:EmailReceived"), ["message"] = null }
                .ToJsonString(),
            "The envelope has no message: send the event's fields as a JSON object in \"message\"");
        yield return Case("a messageType that is a string, not an array", (user, id) =>
            new JsonObject { ["messageId"] = id.ToString(), ["messageType"] = "urn:message:Notely.Events:EmailReceived", ["message"] = Message(user) }
                .ToJsonString(),
            "The envelope's messageType must be an array of strings such as [\"urn:message:Notely.Events:EmailReceived\"]; " +
            "found the string \"urn:message:Notely.Events:EmailReceived\"");
        yield return Case("a missing required field", (user, id) =>
        {
            var message = Message(user);
            message.Remove("date");
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived: required field $.date is missing.");
        yield return Case("null in a field that is not nullable", (user, id) =>
        {
            var message = Message(user);
            message["subject"] = null;
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.subject: expected a string, found null (the field is not nullable).");
        yield return Case("a value of the wrong JSON type", (user, id) =>
        {
            var message = Message(user);
            message["to"] = "bob@example.com";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.to: expected an array of strings, found the string \"bob@example.com\".");
        yield return Case("a timestamp that is not ISO 8601", (user, id) =>
        {
            var message = Message(user);
            message["date"] = "30/11/2026 10:00";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.date: \"30/11/2026 10:00\" is not an ISO 8601 timestamp");
        yield return Case("a valid ISO 8601 timestamp out of range", (user, id) =>
        {
            var message = Message(user);
            message["date"] = "9999-12-31T23:59:59-01:00";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.date: \"9999-12-31T23:59:59-01:00\" is a valid ISO 8601 timestamp but out of range: " +
           "in UTC it is after 9999-12-31T23:59:59.9999999Z");
        yield return Case("an object inside the to array", (user, id) =>
        {
            var message = Message(user);
            message["to"] = new JsonArray("bob@example.com", new JsonObject { ["email"] = "carol@example.com" });
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.to[1]: expected a string, found an object.");
        yield return Case("null inside the to array", (user, id) =>
        {
            var message = Message(user);
            message["to"] = new JsonArray("bob@example.com", "carol@example.com", null);
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.to[2]: expected a string, found null");
        yield return Case("an event id that is not a UUID", (user, id) =>
        {
            var message = Message(user);
            message["eventId"] = "evt_42";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.eventId: expected a UUID string such as \"5f74c51c-86c0-4dc7-a368-47b42c116b63\", found the string \"evt_42\".");
        yield return Case("a lone surrogate escape in a string", (user, id) =>
        {
            var message = Message(user);
            message["subject"] = "LONE-SURROGATE";
            return RawEvents.Envelope(EmailReceived, message, id).Replace("LONE-SURROGATE", "\\ud800x");
        }, "EmailReceived field $.subject: expected a string, found a string that is not valid Unicode");
        yield return Case("a user id no subscription can have (a NUL character)", (user, id) =>
        {
            var message = Message(user);
            message["userId"] = user + "\u0000x";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.userId: expected a user id of 1 to 256 characters without spaces at either end or control characters, found the string");
        yield return Case("an empty user id", (user, id) =>
        {
            var message = Message(user);
            message["userId"] = "";
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.userId: expected a user id of 1 to 256 characters without spaces at either end or control characters, found the string \"\".");
        yield return Case("the nil UUID as event id", (user, id) =>
        {
            var message = Message(user);
            message["eventId"] = Guid.Empty.ToString();
            return RawEvents.Envelope(EmailReceived, message, id);
        }, "EmailReceived field $.eventId: expected a UUID other than the nil UUID (it is the event's idempotency key), found \"00000000-0000-0000-0000-000000000000\".");
    }

    [TestCaseSource(nameof(BadMessages))]
    public async Task A_bad_message_is_parked_in_error_with_a_readable_reason_and_the_next_good_event_is_delivered(
        Func<string, Guid, string> bad, string reason)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]);
        var badId = Guid.NewGuid();

        Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceived), bad(user, badId), messageId: badId.ToString()), Is.True);
        var good = Message(user);
        Assert.That(await RabbitManagement.PublishAsync(RawEvents.Exchange(EmailReceived), RawEvents.Envelope(EmailReceived, good)), Is.True);

        Assert.That(await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True, "the good event after the bad one is delivered");
        Assert.That(JsonNode.Parse(receiver.Requests[0].Body)!["id"]!.GetValue<Guid>(), Is.EqualTo(good["eventId"]!.GetValue<Guid>()));
        List<JsonNode> parked = [];
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
        {
            parked = [.. (await RabbitManagement.PeekAsync(ErrorQueue, truncate: 1000)).Where(m => m["properties"]?["message_id"]?.GetValue<string>() == badId.ToString())];
            return parked.Count > 0;
        }, TimeSpan.FromSeconds(30)), Is.True, $"the bad message is in {ErrorQueue}");
        Assert.That(parked, Has.Count.EqualTo(1), "parked once");
        var headers = parked[0]["properties"]!["headers"]!;
        Assert.Multiple(() =>
        {
            Assert.That(headers["MT-Fault-Message"]?.GetValue<string>(), Does.Contain(reason));
            Assert.That(headers["MT-Redelivery-Count"], Is.Null, "parked at once, not after hours of redelivery");
            Assert.That(headers["MT-Reason"]?.GetValue<string>(), Is.EqualTo("fault"));
            Assert.That(receiver.Requests, Has.Count.EqualTo(1), "nothing was delivered for the bad message");
        });
    }

    private static TestCaseData Case(string name, Func<string, Guid, string> bad, string reason) =>
        new TestCaseData(bad, reason).SetArgDisplayNames(name);

    private static JsonObject Message(string user) => EventSchemas.ExampleMessage(EmailReceived, user, Guid.NewGuid()).AsObject();
}
