namespace WebhookDispatcher.Shaping;

/// <summary>
/// The templates a subscription can choose by name (<c>{"builtin": "slack"}</c>). Each is plain
/// Liquid over the same model as a custom template (see <see cref="TemplateRenderer"/>), so a user
/// can copy one from docs/webhooks.md and change it. <c>to_text</c> writes a string as it is and
/// any other value as compact JSON.
/// </summary>
public static class BuiltInTemplates
{
    /// <summary>One built-in template.</summary>
    /// <param name="Name">The name a subscription gives.</param>
    /// <param name="Liquid">Its Liquid source.</param>
    /// <param name="ContentType">The <c>Content-Type</c> of its body.</param>
    /// <param name="Description">What receives it.</param>
    public sealed record BuiltIn(string Name, string Liquid, string ContentType, string Description);

    private const string Lines = "{% for field in data %}\n{{ field[0] }}: {{ field[1] | to_text }}{% endfor %}";

    /// <summary>Slack incoming webhook: <c>{"text": …}</c> (mrkdwn).</summary>
    public static readonly BuiltIn Slack = new("slack",
        "{%- capture text -%}*{{ event_type }}* at {{ created_at }}" + Lines + "{%- endcapture -%}\n{\"text\": {{ text | json }}}",
        "application/json", "Slack incoming webhook: {\"text\": …}, the event type in bold and one line per data field.");

    /// <summary>Discord webhook: <c>{"content": …}</c>, cut to Discord's 2,000 characters.</summary>
    public static readonly BuiltIn Discord = new("discord",
        "{%- capture text -%}**{{ event_type }}** at {{ created_at }}" + Lines + "{%- endcapture -%}\n{\"content\": {{ text | truncate: 2000 | json }}}",
        "application/json", "Discord webhook: {\"content\": …} (at most 2,000 characters).");

    /// <summary>Microsoft Teams (a Workflows "When a Teams webhook request is received" flow): a message with one Adaptive Card.</summary>
    public static readonly BuiltIn Teams = new("teams",
        """
        {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": {
          "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
          "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": {{ event_type | json }}},
            {"type": "TextBlock", "isSubtle": true, "spacing": "None", "text": {{ created_at | json }}},
            {"type": "FactSet", "facts": [{% for field in data %}{% unless forloop.first %}, {% endunless %}{"title": {{ field[0] | json }}, "value": {{ field[1] | to_text | json }}}{% endfor %}]}
          ]}}]}
        """,
        "application/json", "Microsoft Teams Workflows webhook: a message with an Adaptive Card (event type, time, one fact per data field).");

    /// <summary>Plain text: the event type and time, then one line per data field.</summary>
    public static readonly BuiltIn Text = new("text",
        "{{ event_type }} at {{ created_at }} (event {{ id }})" + Lines + "\n",
        "text/plain; charset=utf-8", "Plain text: the event type and time, then one line per data field.");

    /// <summary>All built-ins by name.</summary>
    public static readonly IReadOnlyDictionary<string, BuiltIn> All =
        new[] { Slack, Discord, Teams, Text }.ToDictionary(t => t.Name, StringComparer.Ordinal);
}
