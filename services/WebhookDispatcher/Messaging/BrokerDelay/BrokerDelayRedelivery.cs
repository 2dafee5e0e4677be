using MassTransit;
using MassTransit.Configuration;
using MassTransit.Middleware;
using MassTransit.Serialization;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// MassTransit's <see cref="MessageRedeliveryContext"/> for a stock RabbitMQ: instead of the
/// <c>x-delayed-message</c> exchange that <c>UseDelayedRedelivery</c> needs (a plugin not installed
/// here), the message is forwarded to a TTL delay queue that dead-letters it back to the input
/// exchange. Headers, message id and <c>MT-Redelivery-Count</c> (+1) travel with it, as with
/// MassTransit's own redelivery.
/// </summary>
internal sealed class BrokerDelayRedeliveryContext<TMessage>(
    ConsumeContext<TMessage> context, RabbitMqDelayTopology topology, RedeliveryOptions options) : MessageRedeliveryContext
    where TMessage : class
{
    public async Task ScheduleRedelivery(TimeSpan delay, Action<ConsumeContext, SendContext>? callback = null)
    {
        var inputAddress = context.ReceiveContext.InputAddress;
        var destination = inputAddress;
        if (delay > TimeSpan.Zero)
        {
            var inputQueue = inputAddress.AbsolutePath.TrimEnd('/').Split('/')[^1];
            var exchange = await topology.EnsureAsync(inputQueue, RetrySchedule.RoundUpToLevel(delay), context.CancellationToken);
            destination = new Uri($"exchange:{exchange}");
        }

        var pipe = Pipe.Execute<SendContext<TMessage>>(sendContext =>
        {
            sendContext.ApplyRedeliveryOptions(context, options);
            callback?.Invoke(context, sendContext);
        });
        var endpoint = await context.GetSendEndpoint(destination);
        await endpoint.Send(context.Message, new ForwardMessagePipe<TMessage>(context, pipe), context.CancellationToken);
    }
}

internal sealed class BrokerDelayRedeliveryFilter<TMessage>(RabbitMqDelayTopology topology, RedeliveryOptions options)
    : IFilter<ConsumeContext<TMessage>> where TMessage : class
{
    public Task Send(ConsumeContext<TMessage> context, IPipe<ConsumeContext<TMessage>> next)
    {
        context.GetOrAddPayload<MessageRedeliveryContext>(() => new BrokerDelayRedeliveryContext<TMessage>(context, topology, options));
        return next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("brokerDelayRedelivery");
}

internal sealed class BrokerDelayRedeliveryPipeSpecification<TMessage>(RabbitMqDelayTopology topology)
    : IPipeSpecification<ConsumeContext<TMessage>>, IRedeliveryPipeSpecification where TMessage : class
{
    public RedeliveryOptions Options { get; set; }

    public void Apply(IPipeBuilder<ConsumeContext<TMessage>> builder) =>
        builder.AddFilter(new BrokerDelayRedeliveryFilter<TMessage>(topology, Options));

    public IEnumerable<ValidationResult> Validate() => [];
}

/// <summary>Registers broker-held redelivery on a consumer's message pipe.</summary>
public static class BrokerDelayRedeliveryExtensions
{
    /// <summary>
    /// Like MassTransit's <c>UseDelayedRedelivery</c>, but the delay is held by RabbitMQ TTL queues
    /// (see <see cref="RabbitMqDelayTopology"/>), so it works without the delayed-message plugin.
    /// Delays are rounded up to <see cref="RetrySchedule.DelayLevels"/>.
    /// </summary>
    public static void UseBrokerDelayedRedelivery<TMessage>(this IPipeConfigurator<ConsumeContext<TMessage>> configurator,
        RabbitMqDelayTopology topology, Action<IRedeliveryConfigurator> configure)
        where TMessage : class
    {
        var redelivery = new BrokerDelayRedeliveryPipeSpecification<TMessage>(topology);
        var retry = new RedeliveryRetryPipeSpecification<TMessage>(redelivery);
        configure(retry);
        configurator.AddPipeSpecification(redelivery);
        configurator.AddPipeSpecification(retry);
    }
}
