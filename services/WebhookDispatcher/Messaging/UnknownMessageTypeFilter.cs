using System.Text.Json;
using MassTransit;
using MassTransit.Middleware.Rescue;
using MassTransit.Transports;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// The dead-letter pipe of the dispatcher's endpoints: a message that no consumer took (its
/// <c>messageType</c> is missing or names no event this service consumes) is a publisher's
/// mistake, so it goes to the endpoint's <c>_error</c> queue with a readable
/// <c>MT-Fault-Message</c> instead of MassTransit's silent <c>_skipped</c> queue.
/// </summary>
internal sealed class UnknownMessageTypeFilter : IFilter<ReceiveContext>
{
    public async Task Send(ReceiveContext context, IPipe<ReceiveContext> next)
    {
        var types = MessageTypesOf(context);
        var reason = types.Count == 0
            ? "The envelope names no messageType; send [\"urn:message:Notely.Events:<EventName>\"] (see docs/publishing.md)."
            : $"No consumer on {context.InputAddress.AbsolutePath.TrimStart('/')} for message type {string.Join(", ", types)}; " +
              "this service consumes urn:message:Notely.Events:<EventName> for the 17 events of docs/publishing.md.";
        if (!context.TryGetPayload(out IErrorTransport? transport))
            throw new TransportException(context.InputAddress, $"The {nameof(IErrorTransport)} was not available on the {nameof(ReceiveContext)}.");
        await transport.Send(new RescueExceptionReceiveContext(context, new MessageNotConsumedException(context.InputAddress, reason)));
        await next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("unknownMessageTypeToError");

    private static IReadOnlyList<string> MessageTypesOf(ReceiveContext context)
    {
        try
        {
            using var envelope = JsonDocument.Parse(context.Body.GetBytes());
            foreach (var property in envelope.RootElement.EnumerateObject())
            {
                if (!property.Name.Equals("messageType", StringComparison.OrdinalIgnoreCase) || property.Value.ValueKind != JsonValueKind.Array) continue;
                return property.Value.EnumerateArray().Select(t => t.ToString()).Take(5).ToList();
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Not a JSON object envelope: no types to name.
        }
        return [];
    }
}
