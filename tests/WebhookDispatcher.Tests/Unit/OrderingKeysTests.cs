using System.Text.Json;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>Ordering keys taken from events (decision 0014), the key each ordering stores, and the <c>ordering</c> field's validation.</summary>
public sealed class OrderingKeysTests
{
    private static readonly Guid Id = Guid.Parse("0193a3c1-0000-7000-8000-000000000001");

    [Test]
    public void Task_events_of_one_task_share_a_key_whatever_their_type()
    {
        var created = new TaskCreated { EventId = Id, UserId = "u1", OccurredAt = DateTimeOffset.UnixEpoch, TaskId = "t-42", Title = "a" };
        var deleted = new TaskDeleted { EventId = Id, UserId = "u1", OccurredAt = DateTimeOffset.UnixEpoch, TaskId = "t-42", Title = "a" };
        Assert.Multiple(() =>
        {
            Assert.That(OrderingKeys.Of(created), Is.EqualTo("task_id:t-42"));
            Assert.That(OrderingKeys.Of(deleted), Is.EqualTo(OrderingKeys.Of(created)));
        });
    }

    [TestCase("email.received", "email_id:")]
    [TestCase("email.indexed", "email_id:")]
    [TestCase("calendar.event_updated", "calendar_event_id:")]
    [TestCase("task.completed", "task_id:")]
    [TestCase("indexing.failed", "job_id:")]
    [TestCase("export.completed", "export_id:")]
    [TestCase("sync.completed", "sync_id:")]
    [TestCase("user.created", "user_id:")]
    [TestCase("user.settings_updated", "user_id:")]
    public void Each_type_takes_its_key_from_the_field_the_catalog_names(string type, string prefix)
    {
        var info = EventCatalog.All.Single(t => t.Name == type);
        var evt = EventSchemas.Example(info, userId: "user-7");
        var key = OrderingKeys.Of(evt);
        Assert.That(key, Does.StartWith(prefix));
        var value = key[prefix.Length..];
        if (info.OrderingKey == EventTypeInfo.UserKey)
            Assert.That(value, Is.EqualTo("user-7"));
        else
        {
            // The value is the payload's field named by the catalog path (data.task_id …).
            using var payload = JsonDocument.Parse(WebhookPayload.Build(evt));
            Assert.That(value, Is.EqualTo(payload.RootElement.GetProperty("data").GetProperty(OrderingKeys.Field(info.OrderingKey)).ToString()));
        }
    }

    [Test]
    public void Every_catalog_entry_names_a_key_its_payload_has_or_the_user()
    {
        foreach (var info in EventCatalog.All)
        {
            var path = info.OrderingKey;
            if (path == EventTypeInfo.UserKey) continue;
            Assert.That(path, Does.StartWith("data."), info.Name);
            using var payload = JsonDocument.Parse(WebhookPayload.Build(EventSchemas.Example(info)));
            Assert.That(payload.RootElement.GetProperty("data").TryGetProperty(OrderingKeys.Field(path), out _), Is.True, info.Name);
        }
    }

    [Test]
    public void The_same_value_in_different_fields_gives_different_keys() =>
        Assert.That(OrderingKeys.Key("task_id", "42"), Is.Not.EqualTo(OrderingKeys.Key("email_id", "42")));

    [Test]
    public void A_very_long_value_is_hashed_and_equal_values_still_share_a_key()
    {
        var value = new string('x', 5000);
        var key = OrderingKeys.Key("task_id", value);
        Assert.Multiple(() =>
        {
            Assert.That(key, Does.StartWith("task_id:sha256:"));
            Assert.That(key.Length, Is.LessThanOrEqualTo(OrderingKeys.MaxKeyChars));
            Assert.That(OrderingKeys.Key("task_id", value), Is.EqualTo(key));
            Assert.That(OrderingKeys.Key("task_id", value + "y"), Is.Not.EqualTo(key));
        });
    }

    [TestCase(SubscriptionOrdering.None, null)]
    [TestCase(SubscriptionOrdering.Strict, "")]
    [TestCase(SubscriptionOrdering.PerKey, "task_id:t-1")]
    public void The_stored_key_follows_the_subscriptions_ordering(string ordering, string? stored) =>
        Assert.That(SubscriptionOrdering.StoredKey(ordering, "task_id:t-1"), Is.EqualTo(stored));

    [TestCase("\"per_key\"", true)]
    [TestCase("\"strict\"", true)]
    [TestCase("\"none\"", true)]
    [TestCase("\"PER_KEY\"", false)]
    [TestCase("\"fifo\"", false)]
    [TestCase("null", false)]
    [TestCase("1", false)]
    public void The_ordering_field_accepts_only_its_three_values(string json, bool valid)
    {
        using var body = JsonDocument.Parse($$"""{"url": "https://example.com/h", "event_types": ["task.updated"], "ordering": {{json}}}""");
        var (fields, errors) = SubscriptionRequest.Read(body.RootElement, isCreate: true, httpsOnly: false, allowPrivateNetworks: false);
        Assert.Multiple(() =>
        {
            Assert.That(errors.ContainsKey("ordering"), Is.EqualTo(!valid));
            Assert.That(fields.Ordering, valid ? Is.EqualTo(JsonSerializer.Deserialize<string>(json)) : Is.Null);
        });
    }
}
