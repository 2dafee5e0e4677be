using System.ComponentModel.DataAnnotations;
using MassTransit;
using Notely.Events;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Messaging;

/// <summary>Which roles this process plays (section <c>Dispatcher</c>), so API and workers can scale apart.</summary>
public sealed class DispatcherOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Dispatcher";

    /// <summary>Run the consumers (fan-out, delivery) and the reconciler. Default true.</summary>
    public bool Workers { get; set; } = true;
}

/// <summary>MassTransit on RabbitMQ: the bus, the endpoints and their redelivery.</summary>
public static class MessagingExtensions
{
    /// <summary>
    /// Redeliveries of a message that failed for a reason other than a receiver's answer (database
    /// or broker trouble): 2, 4 … 2048 s, then hourly, about 10 hours in all, enough to ride out a
    /// long database outage before the message is parked in the endpoint's <c>_error</c> queue.
    /// </summary>
    public const int TransientRedeliveryLimit = 20;

    /// <summary>
    /// Adds the bus (connection string <c>RabbitMq</c>, an <c>amqp://user:password@host:port/vhost</c>
    /// URI) and, when <see cref="DispatcherOptions.Workers"/> is on, the fan-out and delivery consumers.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection string is missing.</exception>
    public static IHostApplicationBuilder AddMessaging(this IHostApplicationBuilder builder)
    {
        var brokerUri = new Uri(builder.Configuration.GetConnectionString("RabbitMq")
                                ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is not set (e.g. amqp://guest:guest@127.0.0.1:5672/)."));
        var dispatcher = builder.Configuration.GetSection(DispatcherOptions.Section).Get<DispatcherOptions>() ?? new DispatcherOptions();
        builder.Services.AddOptions<DispatcherOptions>().BindConfiguration(DispatcherOptions.Section);
        builder.Services.AddSingleton(new RabbitMqDelayTopology(brokerUri));

        // Start serving only once the endpoints and their bindings exist (a fresh broker drops events
        // published to an exchange with no queue bound yet); on stop, let attempts in flight (at most
        // 60 s each) finish and be recorded before the process exits.
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.ConsumerStopTimeout = TimeSpan.FromSeconds(Subscriptions.WebhookSubscription.MaxTimeoutSeconds + 10);
            o.StopTimeout = TimeSpan.FromSeconds(Subscriptions.WebhookSubscription.MaxTimeoutSeconds + 20);
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(Subscriptions.WebhookSubscription.MaxTimeoutSeconds + 30));

        builder.Services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            // MassTransit would otherwise report host and bus details to its vendor over the internet.
            x.DisableUsageTelemetry();
            if (dispatcher.Workers)
                AddConsumers(x);
            // Once per endpoint: a message of a type no consumer takes is a publisher's mistake and
            // goes to _error with the reason, not to MassTransit's silent _skipped queue.
            x.AddConfigureEndpointsCallback((_, endpoint) => endpoint.ConfigureDeadLetter(d => d.UseFilter(new UnknownMessageTypeFilter())));
            x.UsingRabbitMq((context, cfg) =>
            {
                var userInfo = brokerUri.UserInfo.Split(':', 2);
                var virtualHost = Uri.UnescapeDataString(brokerUri.AbsolutePath.TrimStart('/')) is { Length: > 0 } vhost ? vhost : "/";
                cfg.Host(brokerUri.Host, (ushort)(brokerUri.IsDefaultPort ? 5672 : brokerUri.Port), virtualHost, h =>
                {
                    if (userInfo[0].Length > 0) h.Username(Uri.UnescapeDataString(userInfo[0]));
                    if (userInfo.Length > 1) h.Password(Uri.UnescapeDataString(userInfo[1]));
                });
                // Incoming events: an offset is honoured, no offset means UTC (not the host's zone).
                cfg.ConfigureJsonSerializerOptions(IncomingEventJson.Configure);
                cfg.ConfigureEndpoints(context);
            });
        });
        return builder;
    }

    private static void AddConsumers(IBusRegistrationConfigurator x)
    {
        foreach (var eventType in EventCatalog.All)
        {
            x.AddConsumer(typeof(EventFanOutConsumer<>).MakeGenericType(eventType.ContractType),
                typeof(EventFanOutConsumerDefinition<>).MakeGenericType(eventType.ContractType));
        }
        x.AddConsumer<DeliveryConsumer, DeliveryConsumerDefinition>();
    }

    /// <summary>Settings every dispatcher endpoint shares: quorum queues (replicated, at-least-once dead-lettering).</summary>
    internal static void ConfigureEndpoint(IReceiveEndpointConfigurator endpoint)
    {
        if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
            rabbit.SetQuorumQueue();
    }
}
