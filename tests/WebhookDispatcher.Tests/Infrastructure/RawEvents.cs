using System.Text.Json.Nodes;
using Notely.Events;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>Events as a non-.NET publisher sends them: a MassTransit JSON envelope written by hand.</summary>
public static class RawEvents
{
    /// <summary>The exchange an event type is published to: <c>Notely.Events:EmailReceived</c>.</summary>
    public static string Exchange(EventTypeInfo type) => $"{type.ContractType.Namespace}:{type.ContractType.Name}";

    /// <summary>The envelope <c>{"messageId", "messageType", "message"}</c> around a camelCase message.</summary>
    public static string Envelope(EventTypeInfo type, JsonNode message, Guid? messageId = null) => new JsonObject
    {
        ["messageId"] = (messageId ?? Guid.NewGuid()).ToString(),
        ["messageType"] = new JsonArray($"urn:message:{type.ContractType.Namespace}:{type.ContractType.Name}"),
        ["message"] = message.DeepClone(),
    }.ToJsonString();
}
