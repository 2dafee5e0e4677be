namespace Notely.Events;

/// <summary>One entry of the event-type catalog.</summary>
/// <param name="Name">The wire name subscribers use, e.g. <c>email.received</c>: lower case,
/// <c>category.action</c>.</param>
/// <param name="Description">One line saying when the event is published.</param>
/// <param name="ContractType">The record published on RabbitMQ for this event type.</param>
/// <param name="OrderingKey">
/// Where a subscription with per-key ordering takes the event's ordering key from: a field of the
/// payload's <c>data</c> naming the thing the event is about (<c>data.task_id</c>, <c>data.email_id</c>,
/// <c>data.calendar_event_id</c> …), or <c>user_id</c> (the event's user) for types without one.
/// Events with the same key (same field name and value) reach such a subscription one at a time, in
/// the order they were published.
/// </param>
public sealed record EventTypeInfo(string Name, string Description, Type ContractType, string OrderingKey = EventTypeInfo.UserKey)
{
    /// <summary>The ordering key of event types about no other thing than their user: the event's <c>UserId</c>.</summary>
    public const string UserKey = "user_id";

    /// <summary>The part of <see cref="Name"/> before the dot, e.g. <c>email</c>.</summary>
    public string Category => Name[..Name.IndexOf('.')];
}
