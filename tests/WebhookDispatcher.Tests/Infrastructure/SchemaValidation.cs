using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>Validates JSON against a JSON Schema with JsonSchema.Net (formats enforced), independently of how the schema was made.</summary>
public static class SchemaValidation
{
    /// <summary>Every failure, as "instance location: message"; empty when <paramref name="instance"/> is valid.</summary>
    public static IReadOnlyList<string> Errors(JsonNode schema, string instance)
    {
        var compiled = JsonSchema.FromText(schema.ToJsonString(), baseUri: new Uri($"https://schemas.test/{Guid.NewGuid()}"));
        using var document = JsonDocument.Parse(instance);
        var result = compiled.Evaluate(document.RootElement,
            new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
        if (result.IsValid) return [];
        return [.. (result.Details ?? []).Append(result)
            .Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key}: {e.Value}"))
            .DefaultIfEmpty("invalid (no detail)")];
    }
}
