namespace Notely.Events;

/// <summary>One entry of the event-type catalog.</summary>
/// <param name="Name">The wire name subscribers use, e.g. <c>email.received</c>: lower case,
/// <c>category.action</c>.</param>
/// <param name="Description">One line saying when the event is published.</param>
/// <param name="ContractType">The record published on RabbitMQ for this event type.</param>
public sealed record EventTypeInfo(string Name, string Description, Type ContractType)
{
    /// <summary>The part of <see cref="Name"/> before the dot, e.g. <c>email</c>.</summary>
    public string Category => Name[..Name.IndexOf('.')];
}
