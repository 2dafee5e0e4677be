using System.Collections.Frozen;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Notely.Events;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// An event's ordering key, from where its catalog entry says (<see cref="EventTypeInfo.OrderingKey"/>):
/// <c>field:value</c>, e.g. <c>task_id:7f3a…</c> for <c>data.task_id</c>, or <c>user_id:…</c>. The field
/// name is part of the key, so a task and an email whose ids happen to be equal do not wait for
/// each other, while <c>task.created</c>, <c>task.updated</c> and <c>task.deleted</c> of one task share it.
/// </summary>
public static class OrderingKeys
{
    /// <summary>
    /// Longest key stored as it is, in characters. A longer value (a publisher's very long id) is
    /// stored as <c>field:sha256:&lt;hex&gt;</c> of its UTF-8 bytes, so the key stays small enough
    /// for its index, and equal values still give equal keys.
    /// </summary>
    public const int MaxKeyChars = 200;

    private static readonly FrozenDictionary<Type, Func<INotelyEvent, string>> Getters =
        EventCatalog.All.ToFrozenDictionary(t => t.ContractType, Getter);

    /// <summary>The ordering key of <paramref name="evt"/>.</summary>
    /// <exception cref="ArgumentException">The event's type is not in <see cref="EventCatalog"/>.</exception>
    public static string Of(INotelyEvent evt) =>
        Getters.TryGetValue(evt.GetType(), out var getter)
            ? getter(evt)
            : throw new ArgumentException($"{evt.GetType()} is not in the Notely event catalog.", nameof(evt));

    /// <summary>The key made of a field name and its value, hashed past <see cref="MaxKeyChars"/>.</summary>
    public static string Key(string field, string value)
    {
        var key = field + ":" + value;
        return key.Length <= MaxKeyChars ? key : field + ":sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
    }

    /// <summary>The snake_case field named by a catalog path (<c>data.task_id</c> → <c>task_id</c>).</summary>
    public static string Field(string path) => path.StartsWith("data.", StringComparison.Ordinal) ? path["data.".Length..] : path;

    /// <summary>The contract property a catalog path names (<c>data.task_id</c> → <c>TaskId</c>).</summary>
    public static string PropertyName(string path) =>
        string.Concat(Field(path).Split('_').Select(part => part.Length == 0 ? part : char.ToUpperInvariant(part[0]) + part[1..]));

    private static Func<INotelyEvent, string> Getter(EventTypeInfo type)
    {
        var field = Field(type.OrderingKey);
        var property = type.ContractType.GetProperty(PropertyName(type.OrderingKey), BindingFlags.Public | BindingFlags.Instance)
                       ?? throw new InvalidOperationException($"{type.Name}: its ordering key {type.OrderingKey} names no property of {type.ContractType.Name}.");
        // A missing value (not possible for the required fields the catalog names) falls back to the user's key.
        return evt => property.GetValue(evt) is { } value && value.ToString() is { Length: > 0 } text
            ? Key(field, text)
            : Key(EventTypeInfo.UserKey, evt.UserId);
    }
}
