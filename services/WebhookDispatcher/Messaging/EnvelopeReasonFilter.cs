using System.Text.Json;
using MassTransit;
using MassTransit.Middleware.Rescue;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// The first step of the dispatcher's error pipe: a message that faulted because its envelope has
/// the wrong shape (no <c>message</c>, or <c>null</c>, or not an object; a <c>messageType</c> that
/// is not an array of strings) is parked with a reason that names the envelope field and says
/// what was expected (docs/publishing.md), instead of the deserializer's words (<c>Value cannot be
/// null. (Parameter 'envelope')</c>). Any other fault passes unchanged. It reads the body only on
/// this path, after a fault, never for a message that was consumed.
/// </summary>
internal sealed class EnvelopeReasonFilter : IFilter<ExceptionReceiveContext>
{
    public Task Send(ExceptionReceiveContext context, IPipe<ExceptionReceiveContext> next)
    {
        if (context.Exception is UnprocessableMessageException || Problem(context.Body.GetBytes()) is not { } reason)
            return next.Send(context);
        return next.Send(new RescueExceptionReceiveContext(context, new UnprocessableMessageException(reason)));
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("envelopeReason");

    /// <summary>What is wrong with the envelope's shape, or null when nothing is (or it is not a JSON object at all: the parser's words say that best).</summary>
    internal static string? Problem(byte[] body)
    {
        try
        {
            using var envelope = JsonDocument.Parse(body);
            if (envelope.RootElement.ValueKind != JsonValueKind.Object) return null;
            JsonElement? message = null, types = null;
            foreach (var property in envelope.RootElement.EnumerateObject())
            {
                if (property.Name.Equals("message", StringComparison.OrdinalIgnoreCase)) message = property.Value;
                else if (property.Name.Equals("messageType", StringComparison.OrdinalIgnoreCase)) types = property.Value;
            }
            if (types is { } t && (t.ValueKind != JsonValueKind.Array || t.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String)))
                return "The envelope's messageType must be an array of strings such as [\"urn:message:Notely.Events:EmailReceived\"]; " +
                       $"found {Payloads.IncomingEventReasons.Found(t)} (see docs/publishing.md).";
            if (message is not { } m || m.ValueKind == JsonValueKind.Null)
                return "The envelope has no message: send the event's fields as a JSON object in \"message\" (see docs/publishing.md).";
            if (m.ValueKind != JsonValueKind.Object)
                return $"The envelope's message must be a JSON object holding the event's fields; found {Payloads.IncomingEventReasons.Found(m)}.";
            return null;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}
