using System.Text.Json;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Unit;

public sealed class PayloadTests
{
    [Test]
    public void Payload_has_the_envelope_and_the_event_data_in_snake_case()
    {
        var evt = Events.EmailReceived("user-1");

        using var json = JsonDocument.Parse(WebhookPayload.Build(evt));
        var root = json.RootElement;

        Assert.Multiple(() =>
        {
            Assert.That(root.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "id", "event_type", "created_at", "data" }));
            Assert.That(root.GetProperty("id").GetGuid(), Is.EqualTo(evt.EventId));
            Assert.That(root.GetProperty("event_type").GetString(), Is.EqualTo("email.received"));
            Assert.That(root.GetProperty("created_at").GetString(), Is.EqualTo("2026-11-30T09:15:00.000Z"));
            var data = root.GetProperty("data");
            Assert.That(data.GetProperty("email_id").GetString(), Is.EqualTo(evt.EmailId));
            Assert.That(data.GetProperty("subject").GetString(), Is.EqualTo(evt.Subject));
            Assert.That(data.GetProperty("body_preview").GetString(), Is.EqualTo(evt.BodyPreview));
            Assert.That(data.GetProperty("to")[0].GetString(), Is.EqualTo("bob@example.com"));
            Assert.That(data.TryGetProperty("user_id", out _), Is.False, "the owner's id is not sent to receivers twice");
            Assert.That(data.TryGetProperty("event_id", out _), Is.False);
        });
    }

    [Test]
    public void Every_catalog_event_type_is_unique_and_well_formed()
    {
        var names = Notely.Events.EventCatalog.All.Select(t => t.Name).ToList();

        Assert.Multiple(() =>
        {
            Assert.That(names, Has.Count.EqualTo(17));
            Assert.That(names, Is.Unique);
            Assert.That(names, Has.All.Matches(@"^[a-z]+\.[a-z_]+$"));
            Assert.That(Notely.Events.EventCatalog.All.Select(t => t.ContractType), Is.Unique);
        });
    }
}
