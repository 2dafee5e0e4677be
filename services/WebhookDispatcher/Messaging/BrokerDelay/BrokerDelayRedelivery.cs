using MassTransit;
using MassTransit.Configuration;
using MassTransit.Serialization;

namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// MassTransit's <see cref="MessageRedeliveryContext"/> for a stock RabbitMQ: instead of the
/// <c>x-delayed-message</c> exchange that <c>UseDelayedRedelivery</c> needs (a plugin not installed
/// here), the message is forwarded to a TTL delay queue that dead-letters it back to the input
/// exchange. Headers, message id and <c>MT-Redelivery-Count</c> (+1) travel with it, as with
/// MassTransit's own redelivery.
/// </summary>
internal sealed class BrokerDelayRedeliveryContext<TMessage>(
    ConsumeContext<TMessage> context, RabbitMqTopology topology, RedeliveryOptions options) : MessageRedeliveryContext
    where TMessage : class
{
    public async Task ScheduleRedelivery(TimeSpan delay, Action<ConsumeContext, SendContext>? callback = null)
    {
        try
        {
            await SendAsync(delay, callback);
        }
        catch (MessageReturnedException)
        {
            // The delay queue is gone (an operator deleted it): declare it again and send once more.
            topology.ForgetDeclarations();
            await SendAsync(delay, callback);
        }
    }

    private async Task SendAsync(TimeSpan delay, Action<ConsumeContext, SendContext>? callback)
    {
        var inputAddress = context.ReceiveContext.InputAddress;
        var destination = inputAddress;
        if (delay > TimeSpan.Zero)
        {
            var inputQueue = inputAddress.AbsolutePath.TrimEnd('/').Split('/')[^1];
            var exchange = await topology.EnsureDelayAsync(inputQueue, DelayLevels.RoundUp(delay), context.CancellationToken);
            destination = new Uri($"exchange:{exchange}");
        }

        var pipe = Pipe.Execute<SendContext<TMessage>>(sendContext =>
        {
            sendContext.ApplyRedeliveryOptions(context, options);
            // Mandatory: a delay exchange whose queue was deleted would drop the message silently;
            // the broker returns it instead, and MassTransit throws MessageReturnedException.
            if (sendContext.TryGetPayload(out RabbitMqSendContext? rabbit)) rabbit.Mandatory = true;
            callback?.Invoke(context, sendContext);
        });
        var endpoint = await context.GetSendEndpoint(destination);
        // Bounded like the service's other sends: unconfirmed, it is cancelled (its channel replaced)
        // and the consumer fails, so the broker hands the message back.
        await MessagingExtensions.SendConfirmedAsync(
            ct => endpoint.Send(context.Message, new ForwardMessagePipe<TMessage>(context, pipe), ct), context.CancellationToken);
    }
}

internal sealed class BrokerDelayRedeliveryFilter<TMessage>(RabbitMqTopology topology, RedeliveryOptions options)
    : IFilter<ConsumeContext<TMessage>> where TMessage : class
{
    public Task Send(ConsumeContext<TMessage> context, IPipe<ConsumeContext<TMessage>> next)
    {
        context.GetOrAddPayload<MessageRedeliveryContext>(() => new BrokerDelayRedeliveryContext<TMessage>(context, topology, options));
        return next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("brokerDelayRedelivery");
}

internal sealed class BrokerDelayRedeliveryPipeSpecification<TMessage>(RabbitMqTopology topology)
    : IPipeSpecification<ConsumeContext<TMessage>>, IRedeliveryPipeSpecification where TMessage : class
{
    public RedeliveryOptions Options { get; set; }

    public void Apply(IPipeBuilder<ConsumeContext<TMessage>> builder) =>
        builder.AddFilter(new BrokerDelayRedeliveryFilter<TMessage>(topology, Options));

    public IEnumerable<ValidationResult> Validate() => [];
}

/// <summary>
/// Adds broker-held redelivery to every message type an endpoint consumes, batch consumers
/// included (their messages are redelivered one by one when the batch fails).
/// </summary>
internal sealed class BrokerDelayRedeliveryConfigurationObserver(
    IConsumePipeConfigurator configurator, RabbitMqTopology topology, Action<IRedeliveryConfigurator> configure)
    : ScheduledRedeliveryConfigurationObserver(configurator, configure)
{
    protected override IRedeliveryPipeSpecification AddRedeliveryPipeSpecification<TMessage>(IConsumePipeConfigurator configurator)
    {
        var specification = new BrokerDelayRedeliveryPipeSpecification<TMessage>(topology);
        configurator.AddPipeSpecification(specification);
        return specification;
    }
}

/// <summary>Registers broker-held redelivery on a receive endpoint.</summary>
public static class BrokerDelayRedeliveryExtensions
{
    /// <summary>
    /// Like MassTransit's <c>UseDelayedRedelivery</c>, but the delay is held by RabbitMQ TTL queues
    /// (see <see cref="RabbitMqTopology"/>), so it works without the delayed-message plugin.
    /// Applies to every message type the endpoint consumes. Delays are rounded up to
    /// <see cref="DelayLevels.All"/>.
    /// </summary>
    public static void UseBrokerDelayedRedelivery(this IReceiveEndpointConfigurator endpoint, RabbitMqTopology topology,
        Action<IRedeliveryConfigurator> configure)
    {
        topology.AddDelayedEndpoint(endpoint.InputAddress.AbsolutePath.TrimEnd('/').Split('/')[^1]);
        _ = new BrokerDelayRedeliveryConfigurationObserver(endpoint, topology, configure);
    }

    /// <summary>
    /// The redeliveries of a message that failed for a reason of our own (database or broker
    /// trouble): 2, 4 … 2048 s, then hourly — <paramref name="count"/> of them (20 ride out about
    /// 10 hours), after which the message is parked in the endpoint's <c>_error</c> queue.
    /// </summary>
    public static TimeSpan[] TransientIntervals(int count) =>
        [.. Enumerable.Range(1, count).Select(DelayLevels.Exponential)];
}
