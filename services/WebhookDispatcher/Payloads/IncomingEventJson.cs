using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Notely.Events;

namespace WebhookDispatcher.Payloads;

/// <summary>
/// How events published on RabbitMQ are read (the rules docs/publishing.md states): timestamps by
/// <see cref="UtcTimestamp"/> (an offset is honoured, none means UTC), every <c>required</c>
/// property present, and <c>null</c> refused where the contract's property (or a list's item) is
/// not nullable. A message breaking a rule fails to deserialize, and MassTransit parks it in the
/// endpoint's <c>_error</c> queue with the reason (<see cref="IncomingEventReasons"/>: the field's
/// path and what is wrong); it is never redelivered, since it can never succeed.
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
        // The contracts are read with these rules by a wrapper that turns any failure into a reason naming the field.
        var inner = new JsonSerializerOptions(options);
        options.Converters.Insert(0, new ContractReasonsConverterFactory(inner,
            type => type.Assembly == ContractAssembly && type is { IsClass: true, IsAbstract: false }));
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
            var expected = IncomingEventReasons.Expected(info.PropertyType);
            var itemType = IncomingEventReasons.ElementType(info.PropertyType);
            var itemsNotNull = itemType is { IsValueType: false } && nullability.Create(info).GenericTypeArguments is [{ ReadState: NullabilityState.NotNull }];
            property.Set = (target, value) =>
            {
                if (value is null) throw new EventFieldException($"expected {expected}, found null (the field is not nullable).");
                if (itemsNotNull) RefuseNullItems((System.Collections.IEnumerable)value, IncomingEventReasons.Expected(itemType!));
                set(target, value);
            };
        }
    }

    private static void RefuseNullItems(System.Collections.IEnumerable items, string expected)
    {
        var index = 0;
        foreach (var item in items)
        {
            if (item is null) throw new EventFieldException($"expected {expected}, found null (the items are not nullable).", $"[{index}]");
            index++;
        }
    }
}
