using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Notely.Events;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// How events published on RabbitMQ are read (the rules docs/publishing.md states): timestamps by
/// <see cref="UtcTimestamp"/> (an offset is honoured, none means UTC), every <c>required</c>
/// property present, and <c>null</c> refused where the contract's property is not nullable. A
/// message breaking a rule fails to deserialize, and MassTransit parks it in the endpoint's
/// <c>_error</c> queue with the reason; it is never redelivered, since it can never succeed.
/// </summary>
public static class IncomingEventJson
{
    private static readonly Assembly ContractAssembly = typeof(INotelyEvent).Assembly;

    /// <summary>
    /// Adds the rules to <paramref name="options"/> (MassTransit's serializer options) and returns
    /// them. Safe to apply more than once.
    /// </summary>
    public static JsonSerializerOptions Configure(JsonSerializerOptions options)
    {
        if (options.Converters.OfType<IncomingTimestampConverter>().Any()) return options;
        options.Converters.Insert(0, new IncomingTimestampConverter());
        var resolver = options.TypeInfoResolver ?? new DefaultJsonTypeInfoResolver();
        options.TypeInfoResolver = resolver.WithAddedModifier(RefuseNullForNonNullableContractProperties);
        return options;
    }

    /// <summary>
    /// System.Text.Json accepts <c>null</c> for any reference-type property unless told otherwise;
    /// for the contracts, a <c>string</c> (not <c>string?</c>) property must not be null. Scoped to
    /// the contract assembly so MassTransit's own messages are read as before.
    /// </summary>
    private static void RefuseNullForNonNullableContractProperties(JsonTypeInfo typeInfo)
    {
        if (typeInfo.Type.Assembly != ContractAssembly || typeInfo.Kind != JsonTypeInfoKind.Object) return;
        var nullability = new NullabilityInfoContext();
        foreach (var property in typeInfo.Properties)
        {
            if (property.AttributeProvider is not PropertyInfo info || info.PropertyType.IsValueType) continue;
            if (nullability.Create(info).WriteState != NullabilityState.NotNull || property.Set is not { } set) continue;
            // IsSetNullable alone is only enforced under RespectNullableAnnotations, which would
            // apply to MassTransit's own messages too; a guarded setter says exactly what is wrong.
            var name = property.Name;
            var contract = typeInfo.Type.Name;
            property.Set = (target, value) =>
            {
                if (value is null) throw new JsonException($"'{name}' of {contract} must not be null.");
                set(target, value);
            };
        }
    }
}
