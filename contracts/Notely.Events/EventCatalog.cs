using System.Collections.Frozen;

namespace Notely.Events;

/// <summary>
/// The catalog of event types that can be subscribed to, mapping each contract record to its
/// wire name (<c>email.received</c> …) and its ordering key (<see cref="EventTypeInfo.OrderingKey"/>).
/// Names and keys never change once published; new events add entries.
/// </summary>
public static class EventCatalog
{
    private static readonly EventTypeInfo[] Types =
    [
        new("email.received", "An email arrived in one of the user's connected mailboxes.", typeof(EmailReceived), "data.email_id"),
        new("email.sent", "The user sent an email through Notely.", typeof(EmailSent), "data.email_id"),
        new("email.indexed", "An email was indexed and is now searchable.", typeof(EmailIndexed), "data.email_id"),
        new("calendar.event_created", "A calendar event was created.", typeof(CalendarEventCreated), "data.calendar_event_id"),
        new("calendar.event_updated", "A calendar event was changed.", typeof(CalendarEventUpdated), "data.calendar_event_id"),
        new("calendar.event_deleted", "A calendar event was deleted.", typeof(CalendarEventDeleted), "data.calendar_event_id"),
        new("task.created", "A task was created.", typeof(TaskCreated), "data.task_id"),
        new("task.updated", "A task was changed.", typeof(TaskUpdated), "data.task_id"),
        new("task.completed", "A task was marked as completed.", typeof(TaskCompleted), "data.task_id"),
        new("task.deleted", "A task was deleted.", typeof(TaskDeleted), "data.task_id"),
        new("indexing.started", "An indexing job started for one of the user's sources.", typeof(IndexingStarted), "data.job_id"),
        new("indexing.completed", "An indexing job finished successfully.", typeof(IndexingCompleted), "data.job_id"),
        new("indexing.failed", "An indexing job failed.", typeof(IndexingFailed), "data.job_id"),
        new("user.created", "A Notely account was created.", typeof(UserCreated)),
        new("user.settings_updated", "The user changed account settings.", typeof(UserSettingsUpdated)),
        new("export.completed", "A data export finished and is ready to download.", typeof(ExportCompleted), "data.export_id"),
        new("sync.completed", "A synchronisation with an external provider finished.", typeof(SyncCompleted), "data.sync_id"),
    ];

    private static readonly FrozenDictionary<string, EventTypeInfo> ByName =
        Types.ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);

    private static readonly FrozenDictionary<Type, EventTypeInfo> ByType =
        Types.ToFrozenDictionary(t => t.ContractType);

    /// <summary>Every event type, in catalog order.</summary>
    public static IReadOnlyList<EventTypeInfo> All => Types;

    /// <summary>Whether <paramref name="name"/> is a known event type (exact, case-sensitive match).</summary>
    public static bool IsKnown(string name) => ByName.ContainsKey(name);

    /// <summary>The catalog entry of a contract type.</summary>
    /// <exception cref="ArgumentException">The type is not an event contract of this catalog.</exception>
    public static EventTypeInfo For(Type contractType) =>
        ByType.TryGetValue(contractType, out var info)
            ? info
            : throw new ArgumentException($"{contractType} is not in the Notely event catalog.", nameof(contractType));

    /// <summary>The catalog entry of <typeparamref name="TEvent"/>.</summary>
    /// <exception cref="ArgumentException">The type is not an event contract of this catalog.</exception>
    public static EventTypeInfo For<TEvent>() where TEvent : INotelyEvent => For(typeof(TEvent));
}
