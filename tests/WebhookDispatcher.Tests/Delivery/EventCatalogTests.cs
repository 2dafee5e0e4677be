using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Every event contract other services can publish: listed in the catalog, carried by the broker
/// and delivered with its own data. The contracts are found by reflection over the contracts
/// assembly, so a contract added without a catalog entry fails here.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class EventCatalogTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>The event types of the architecture document, in its order.</summary>
    private static readonly string[] DocumentedTypes =
    [
        "email.received", "email.sent", "email.indexed", "calendar.event_created", "calendar.event_updated", "calendar.event_deleted",
        "task.created", "task.updated", "task.completed", "task.deleted", "indexing.started", "indexing.completed", "indexing.failed",
        "user.created", "user.settings_updated", "export.completed", "sync.completed",
    ];

    private static readonly string[] EnvelopeProperties = [nameof(INotelyEvent.EventId), nameof(INotelyEvent.UserId), nameof(INotelyEvent.OccurredAt)];

    /// <summary>Every concrete <see cref="INotelyEvent"/> in the contracts assembly.</summary>
    private static Type[] Contracts() => typeof(INotelyEvent).Assembly.GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(INotelyEvent).IsAssignableFrom(t))
        .OrderBy(t => t.Name).ToArray();

    [Test]
    public void Every_event_contract_is_in_the_catalog_and_the_catalog_holds_the_17_documented_types()
    {
        var contracts = Contracts();

        Assert.Multiple(() =>
        {
            Assert.That(EventCatalog.All.Select(t => t.ContractType), Is.EquivalentTo(contracts), "contracts and catalog entries");
            Assert.That(EventCatalog.All.Select(t => t.Name), Is.EqualTo(DocumentedTypes));
            Assert.That(contracts, Has.All.Matches<Type>(t => t.Namespace == "Notely.Events"), "one namespace: MassTransit derives message URNs from it");
            Assert.That(contracts, Has.All.Matches<Type>(t => t.IsSealed && t.GetMethod("<Clone>$") is not null), "sealed records");
        });
    }

    [Test]
    public async Task Every_event_type_published_on_the_broker_is_delivered_with_its_own_payload()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var created = await client.CreateAsync(receiver.Url, DocumentedTypes);
        var secret = created["secret"]!.GetValue<string>();
        var events = Contracts().Select((type, i) => Sample(type, user, i)).ToList();

        await using (var scope = Dispatcher.Services.CreateAsyncScope())
        {
            var bus = scope.ServiceProvider.GetRequiredService<IPublishEndpoint>();
            foreach (var evt in events)
                await bus.Publish(evt, evt.GetType()); // as a Notely service publishes it: its own message type
        }

        Assert.That(await receiver.WaitForAsync(events.Count, Patience), Is.True, $"{events.Count} deliveries arrived");
        Assert.That(await Dispatcher.EventuallyAsync(async () =>
            (await Dispatcher.DeliveriesAsync(created.Id())).Count(d => d.Status == DeliveryStatus.Success) == events.Count, Patience), Is.True);
        var byEventId = receiver.Requests.ToDictionary(r => JsonNode.Parse(r.Body)!["id"]!.GetValue<Guid>());
        foreach (var evt in events)
        {
            var name = EventCatalog.For(evt.GetType()).Name;
            Assert.That(byEventId.TryGetValue(evt.EventId, out var request), Is.True, $"{name} was delivered");
            var payload = JsonNode.Parse(request!.Body)!.AsObject();
            var data = payload["data"]!.AsObject();
            var properties = DataProperties(evt.GetType());
            Assert.Multiple(() =>
            {
                Assert.That(request.Headers["x-webhook-event"], Is.EqualTo(name));
                Assert.That(Signatures.StandardVerifies(request, secret), Is.True, name);
                Assert.That(payload.Select(p => p.Key), Is.EqualTo(new[] { "id", "event_type", "created_at", "data" }), name);
                Assert.That(payload["event_type"]!.GetValue<string>(), Is.EqualTo(name));
                Assert.That(payload["created_at"]!.GetValue<DateTimeOffset>(), Is.EqualTo(evt.OccurredAt), name);
                Assert.That(data.Select(p => p.Key), Is.EquivalentTo(properties.Select(p => JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name))),
                    $"{name}: data holds the event's own fields and nothing else");
                foreach (var property in properties)
                {
                    var sent = data[JsonNamingPolicy.SnakeCaseLower.ConvertName(property.Name)];
                    Assert.That(sent.Deserialize(property.PropertyType, JsonSerializerOptions.Web), Is.EqualTo(property.GetValue(evt)),
                        $"{name}.{property.Name}");
                }
            });
        }
    }

    private static PropertyInfo[] DataProperties(Type contract) =>
        contract.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => !EnvelopeProperties.Contains(p.Name)).ToArray();

    /// <summary>An instance of <paramref name="contract"/> with every property set to a value of its own (none null).</summary>
    private static INotelyEvent Sample(Type contract, string userId, int index)
    {
        var evt = (INotelyEvent)Activator.CreateInstance(contract)!;
        contract.GetProperty(nameof(INotelyEvent.EventId))!.SetValue(evt, Guid.NewGuid());
        contract.GetProperty(nameof(INotelyEvent.UserId))!.SetValue(evt, userId);
        contract.GetProperty(nameof(INotelyEvent.OccurredAt))!.SetValue(evt, new DateTimeOffset(2026, 11, 1, 8, 0, 0, TimeSpan.Zero).AddMinutes(index));
        var properties = DataProperties(contract);
        for (var p = 0; p < properties.Length; p++)
        {
            var property = properties[p];
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            var tag = $"{contract.Name}.{property.Name}";
            object value = type switch
            {
                _ when type == typeof(string) => $"{tag} ✓ \"quoted\" <b>",
                _ when type == typeof(long) => 1_000_000_000_000L * (index + 1) + p,
                _ when type == typeof(int) => 1000 * (index + 1) + p,
                _ when type == typeof(double) => index + p / 8.0 + 0.125,
                _ when type == typeof(bool) => (index + p) % 2 == 0,
                _ when type == typeof(Guid) => Guid.NewGuid(),
                _ when type == typeof(DateTimeOffset) => new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.FromHours(2)).AddDays(index).AddMinutes(p),
                _ when type == typeof(IReadOnlyList<string>) => new List<string> { $"{tag}-1", $"{tag}-2" },
                _ => throw new AssertionException($"{tag}: no sample value for {type}; teach {nameof(Sample)} this type."),
            };
            property.SetValue(evt, value);
        }
        return evt;
    }
}
