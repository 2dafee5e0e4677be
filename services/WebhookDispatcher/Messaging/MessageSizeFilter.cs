using MassTransit;
using MassTransit.Middleware.Rescue;
using MassTransit.Transports;

namespace WebhookDispatcher.Messaging;

/// <summary>
/// The first filter of a receive endpoint's pipe: a message whose body, as received, is longer
/// than a limit is moved to the endpoint's <c>_error</c> queue at once with a reason, and
/// acknowledged. It is never deserialized, never retried or redelivered, and no consumer sees it;
/// the messages behind it go on. The length is the transport's (no copy of the body is made
/// to measure it).
/// </summary>
/// <param name="maxBytes">The longest body passed on, in bytes.</param>
/// <param name="reason">The <c>MT-Fault-Message</c> of a longer one, given its length in bytes.</param>
/// <param name="logger">Where a parked message is reported (a warning with its length, never its content).</param>
internal sealed class MessageSizeFilter(long maxBytes, Func<long, string> reason, ILogger logger) : IFilter<ReceiveContext>
{
    public async Task Send(ReceiveContext context, IPipe<ReceiveContext> next)
    {
        // RabbitMQ's body knows its length; another transport's may have to be read to know it.
        var length = context.Body.Length ?? context.Body.GetBytes().LongLength;
        if (length <= maxBytes)
        {
            await next.Send(context).ConfigureAwait(false);
            return;
        }
        // This filter runs before MassTransit's own rescue filter, so it parks the message itself,
        // as the error pipe would (UnknownMessageTypeFilter does the same): returning without an
        // exception acknowledges it. A failed send throws, and the broker keeps the message.
        if (!context.TryGetPayload(out IErrorTransport? transport))
            throw new TransportException(context.InputAddress, $"The {nameof(IErrorTransport)} was not available on the {nameof(ReceiveContext)}.");
        await transport.Send(new RescueExceptionReceiveContext(context, new UnprocessableMessageException(reason(length)))).ConfigureAwait(false);
        logger.LogWarning("Parked a message of {Bytes} bytes from {Queue} in its _error queue without reading it (the limit is {MaxBytes} bytes)",
            length, context.InputAddress.AbsolutePath.TrimStart('/'), maxBytes);
    }

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("messageSizeLimit");
        scope.Add("maxBytes", maxBytes);
    }
}
