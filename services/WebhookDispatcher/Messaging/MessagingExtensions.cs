using MassTransit;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Messaging;

/// <summary>Which roles this process plays (section <c>Dispatcher</c>), so API and workers can scale apart.</summary>
public sealed class DispatcherOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Dispatcher";

    /// <summary>Run the consumers (fan-out, delivery) and the reconciler. Default true.</summary>
    public bool Workers { get; set; } = true;

    /// <summary>
    /// Whether <paramref name="configuration"/> turns the workers on (the default). Always on for
    /// the <c>topology</c> command (<see cref="MessagingOptions.DeployTopologyOnly"/>), which
    /// declares what the workers use.
    /// </summary>
    public static bool WorkersEnabled(IConfiguration configuration) =>
        (configuration.GetSection(Section).Get<DispatcherOptions>()?.Workers ?? true) || MessagingOptions.DeployTopologyOnlyIn(configuration);
}

/// <summary>
/// A feature's part in the bus: the consumers it registers and the receive endpoints it
/// configures. Features register an instance as a singleton before <see cref="MessagingExtensions.AddMessaging"/>
/// runs, so this folder stays plumbing and depends on no feature.
/// </summary>
public interface IBusContributor
{
    /// <summary>Registers the feature's consumers.</summary>
    void AddConsumers(IBusRegistrationConfigurator bus);

    /// <summary>Configures the feature's receive endpoints (called once the bus is being built).</summary>
    void ConfigureEndpoints(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator bus);
}

/// <summary>MassTransit on RabbitMQ: the bus, and the endpoints the features contribute.</summary>
public static class MessagingExtensions
{
    /// <summary>
    /// How long the service's own publishes and sends (retries handed to the delay queues, the
    /// reconciler's re-publishes) wait for the broker's confirm before they count as failed and are
    /// made again: 10 s. A publish caught on a channel whose node died, or during a quorum leader
    /// change, can otherwise wait for its confirm forever and stall the loop that made it.
    /// </summary>
    public static readonly TimeSpan ConfirmTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Runs one of the service's own publishes or sends, <paramref name="send"/>, with a token that
    /// is cancelled after <see cref="ConfirmTimeout"/>. Cancelling the send itself, not only the wait
    /// for it, is what replaces its channel: MassTransit disposes a channel whose use failed or was
    /// cancelled and opens a new one for the next send, and stops retrying the send in the
    /// background (a refused or unconfirmed send is otherwise retried by MassTransit on the same
    /// schedule as a reconnect, up to 1,000 times). The caller makes the send again.
    /// </summary>
    /// <exception cref="TimeoutException">Not confirmed within <see cref="ConfirmTimeout"/>; the send was cancelled.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static async Task SendConfirmedAsync(Func<CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(ConfirmTimeout);
        try
        {
            await send(deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"The broker did not confirm the send within {ConfirmTimeout.TotalSeconds:0} s; it was cancelled and its channel is replaced", ex);
        }
    }

    /// <summary>The largest message RabbitMQ can be configured to accept (<c>max_message_size</c>): 536,870,912 bytes (512 MiB).</summary>
    public const uint MaxBrokerMessageBytes = 512 * 1024 * 1024;

    /// <summary>
    /// Adds the bus (connection string <c>RabbitMq</c>, an <c>amqp://user:password@host:port/vhost</c>
    /// URI, with several <c>host:port</c> separated by commas for a cluster: <see cref="BrokerAddress"/>),
    /// <see cref="RabbitMqTopology"/>, and the consumers and endpoints of every registered
    /// <see cref="IBusContributor"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection string is missing or malformed.</exception>
    public static IHostApplicationBuilder AddMessaging(this IHostApplicationBuilder builder)
    {
        var broker = BrokerAddress.FromConfiguration(builder.Configuration);
        builder.Services.AddSingleton(broker);
        builder.Services.AddOptions<DispatcherOptions>().BindConfiguration(DispatcherOptions.Section);
        var deployTopologyOnly = MessagingOptions.DeployTopologyOnlyIn(builder.Configuration);
        if (deployTopologyOnly) builder.Services.AddHostedService<TopologyCommand.RefuseToServe>();
        builder.Services.AddSingleton(new RabbitMqTopology(broker));
        // Receive endpoints reconnect within about a second of the broker's return, not on MassTransit's schedule.
        builder.Services.AddSingleton<ReceiveEndpointWatchdog>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ReceiveEndpointWatchdog>());
        builder.Services.AddReceiveEndpointObserver(sp => sp.GetRequiredService<ReceiveEndpointWatchdog>());
        var contributors = builder.Services.Where(d => d.ServiceType == typeof(IBusContributor))
            .Select(d => (IBusContributor)d.ImplementationInstance!).ToList();

        // Start serving only once the endpoints and their bindings exist (a fresh broker drops events
        // published to an exchange with no queue bound yet).
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.ConsumerStopTimeout = TimeSpan.FromSeconds(30);
            o.StopTimeout = TimeSpan.FromSeconds(60);
        });

        builder.Services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            // MassTransit would otherwise report host and bus details to its vendor over the internet.
            x.DisableUsageTelemetry();
            foreach (var contributor in contributors)
                contributor.AddConsumers(x);
            x.UsingRabbitMq((context, cfg) =>
            {
                // The topology command: receive endpoints declare their queues and bindings and consume nothing.
                cfg.DeployTopologyOnly = deployTopologyOnly;
                var first = broker.Nodes[0];
                cfg.Host(first.Host, (ushort)first.Port, broker.VirtualHost, h =>
                {
                    if (broker.UserName is not null) h.Username(broker.UserName);
                    if (broker.Password is not null) h.Password(broker.Password);
                    // Several nodes: each connection attempt goes to the next one, so a lost node
                    // costs a reconnect to a surviving one (quorum queues live on all of them).
                    if (broker.IsCluster)
                        h.UseCluster(c =>
                        {
                            foreach (var node in broker.NodeAddresses) c.Node(node);
                        });
                    // Receive whatever the broker can deliver (RabbitMQ's max_message_size is at most
                    // 512 MiB, 128 MiB by default), so the endpoints can park an oversized message.
                    // The client's own default, 64 MiB, closes the connection instead: the broker hands
                    // the message back to the next connection, forever, and every consumer stalls.
                    h.MaxMessageSize(MaxBrokerMessageBytes);
                });
                foreach (var contributor in contributors)
                    contributor.ConfigureEndpoints(context, cfg);
                cfg.ConfigureEndpoints(context);
            });
        });
        return builder;
    }

    /// <summary>
    /// Settings every dispatcher endpoint shares: a quorum queue (replicated, at-least-once
    /// dead-lettering); a message of a type no consumer takes (a publisher's mistake) parked in
    /// <c>_error</c> with the reason, not in MassTransit's silent <c>_skipped</c> queue; and
    /// broker-held redelivery of messages whose consumer failed for a reason of our own —
    /// <paramref name="transientRedeliveries"/> times (2, 4 … s, then hourly), then the endpoint's
    /// <c>_error</c> queue; and an <see cref="UnprocessableMessageException"/> parked in
    /// <c>_error</c> at once.
    /// </summary>
    public static void UseDispatcherDefaults(this IRabbitMqReceiveEndpointConfigurator endpoint, IRegistrationContext context,
        int transientRedeliveries)
    {
        endpoint.SetQuorumQueue();
        endpoint.ConfigureDeadLetter(d => d.UseFilter(new UnknownMessageTypeFilter()));
        // MassTransit's default error pipe (a fault event, then the _error queue), after a reason of our own for a misshapen envelope.
        endpoint.ConfigureError(e =>
        {
            e.UseFilter(new EnvelopeReasonFilter());
            e.UseFilter(new MassTransit.Middleware.GenerateFaultFilter());
            e.UseFilter(new MassTransit.Middleware.ErrorTransportFilter());
        });
        // None configured: a failed message goes to _error at once (MassTransit wants at least one interval).
        if (transientRedeliveries > 0)
            endpoint.UseBrokerDelayedRedelivery(context.GetRequiredService<RabbitMqTopology>(), r =>
            {
                r.Intervals(BrokerDelayRedeliveryExtensions.TransientIntervals(transientRedeliveries));
                // It can never succeed: parked at once (its reason is the exception's message).
                r.Ignore<UnprocessableMessageException>();
            });
    }

    /// <summary>
    /// Parks a message whose body, as received, is longer than <paramref name="maxBytes"/> in the
    /// endpoint's <c>_error</c> queue at once, before anything reads it (see <see cref="MessageSizeFilter"/>).
    /// </summary>
    /// <param name="endpoint">The receive endpoint.</param>
    /// <param name="context">The bus registration (for the logger).</param>
    /// <param name="maxBytes">The longest body consumed, in bytes.</param>
    /// <param name="reason">The <c>MT-Fault-Message</c> of a longer message, given its length in bytes.</param>
    public static void UseMessageSizeLimit(this IReceiveEndpointConfigurator endpoint, IRegistrationContext context, long maxBytes, Func<long, string> reason)
    {
        var logger = context.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(MessageSizeFilter));
        endpoint.ConfigureReceive(r => r.UseFilter(new MessageSizeFilter(maxBytes, reason, logger)));
    }
}
