using MassTransit;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Notely.Events;
using Polly;
using WebhookDispatcher.Data;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Deliveries;

/// <summary>Registers the delivery feature: the outbound HttpClient, the store, and for workers the engine, its consumers and the reconciler.</summary>
public static class DeliveryExtensions
{
    /// <summary>
    /// Adds <see cref="WebhookSender"/> with its <c>webhooks</c> HttpClient and the stores the API
    /// uses too; when <see cref="DispatcherOptions.Workers"/> is on, also the stages of the wing
    /// (intake: <see cref="FanOutBatcher"/>; scheduling: <see cref="DeliveryScheduler"/>; attempts:
    /// <see cref="AttemptRunner"/>, <see cref="AttemptRecorder"/>, <see cref="RetryPublisher"/>;
    /// recovery: <see cref="DeliveryReconciler"/>; batches: <see cref="BatchFormer"/>, <see cref="BatchSweep"/>), the <see cref="HistoryRetention"/> and the two
    /// receive endpoints (<c>webhook-fan-out</c>, <c>webhook-delivery</c>). Call before <c>AddMessaging</c>.
    /// </summary>
    public static IHostApplicationBuilder AddDeliveries(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<DeliveryOptions>().BindConfiguration(DeliveryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<ReconcilerOptions>().BindConfiguration(ReconcilerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<AutoDisableOptions>().BindConfiguration(AutoDisableOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<RecoveryStore>();
        builder.Services.AddSingleton<OrderingStore>();
        builder.Services.AddSingleton<WebhookSender>();
        AddWebhookClient(builder.Services);

        // Attempts, and the API's preview and test, take turns to render templates.
        builder.Services.AddSingleton<Shaping.TemplateRenderGate>();
        if (DispatcherOptions.WorkersEnabled(builder.Configuration))
        {
            builder.Services.AddSingleton<FanOutStore>();
            builder.Services.AddSingleton<FanOutSizes>();
            builder.Services.AddSingleton<DispatcherIdentity>();
            builder.Services.AddSingleton<DatabaseClock>();
            builder.Services.AddSingleton<LaneStore>();
            builder.Services.AddSingleton<AttemptStore>();
            builder.Services.AddSingleton<RetryPublisher>();
            builder.Services.AddSingleton<AttemptRunner>();
            builder.Services.AddSingleton<Shaping.TemplateRenderer>();
            builder.Services.AddSingleton<AttemptRecorder>();
            builder.Services.AddSingleton<OrderingHandOff>();
            builder.Services.AddSingleton<OrderingSuccessors>();
            builder.Services.AddSingleton<LaneHolds>();
            builder.Services.AddSingleton<LaneSettings>();
            builder.Services.AddSingleton<InsertClaims>();
            builder.Services.AddSingleton<ReplicaCounter>();
            builder.Services.AddSingleton<DeliveryScheduler>();
            builder.Services.AddSingleton<FanOutBatcher>();
            builder.Services.AddOptions<BatchingOptions>().BindConfiguration(BatchingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
            builder.Services.AddSingleton<BatchStore>();
            builder.Services.AddSingleton<BatchFormer>();
            builder.Services.AddSingleton<BatchSweep>();
            // Stopped in reverse order: the scheduler first (its StoppingAsync already drained the
            // attempts), then the batcher, which flushes the events handed in until the bus stopped.
            builder.Services.AddHostedService(sp => sp.GetRequiredService<FanOutBatcher>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryScheduler>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<BatchFormer>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<BatchSweep>());
            builder.Services.AddSingleton<DeliveryReconciler>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryReconciler>());
            builder.Services.AddOptions<RetentionOptions>().BindConfiguration(RetentionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
            builder.Services.AddSingleton<HistoryRetention>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<HistoryRetention>());
            builder.Services.AddSingleton<IBusContributor>(new DeliveryEndpoints());
            // A stop lets attempts in flight (at most 60 s each) finish and be recorded.
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(WebhookSubscription.MaxTimeoutSeconds + 30));
        }
        return builder;
    }

    /// <summary>The resilience pipeline of an attempt's POST (its deadline), named as Polly's telemetry names it: client, then handler.</summary>
    internal const string AttemptPipelineName = WebhookSender.ClientName + "-webhook-attempt";

    /// <summary>Registers the HttpClient of attempts: no redirects or cookies, bounded bodies, the private-network guard, and the attempt's deadline.</summary>
    internal static void AddWebhookClient(IServiceCollection services)
    {
        // A subscriber that answers after its timeout is the subscriber's problem, recorded as the
        // attempt's outcome (timeout) and retried; Polly logs it as an error by default, which would
        // page an operator for every slow endpoint of every tenant. Information, like other outcomes.
        services.Configure<Polly.Telemetry.TelemetryOptions>(o =>
        {
            var severity = o.SeverityProvider;
            o.SeverityProvider = args => args.Source.PipelineName == AttemptPipelineName && args.Event.EventName == "OnTimeout"
                ? Polly.Telemetry.ResilienceEventSeverity.Information
                : severity?.Invoke(args) ?? args.Event.Severity;
        });
        var client = services.AddHttpClient(WebhookSender.ClientName, client => client.Timeout = Timeout.InfiniteTimeSpan);
        client.ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            // Past the 64 KiB read, close the connection: the default drains up to 1 MiB more in
            // the background to reuse it, so a hostile receiver could make every attempt read 1 MiB.
            MaxResponseDrainSize = 0,
            // No traceparent/tracestate to third-party receivers: a request made inside an API
            // call (the test send) would otherwise carry the caller's trace ids. Spans are still recorded.
            ActivityHeadersPropagator = null,
            // A WebhookNetwork is registered only by tests (name resolution and connect); null is DNS and sockets.
            ConnectCallback = PrivateNetworkGuard.ConnectCallback(
                sp.GetRequiredService<IOptions<DeliveryOptions>>().Value.AllowPrivateNetworks, sp.GetService<WebhookNetwork>()),
        });
        // One handler for the process: the connection pools live as long as it does (the
        // factory's default rotates handlers every 2 minutes, which throws the pools away).
        client.SetHandlerLifetime(Timeout.InfiniteTimeSpan);
        // The resilience pipeline owns the per-attempt deadline; retries belong to the broker.
        client.AddResilienceHandler("webhook-attempt", pipeline => pipeline.AddTimeout(new HttpTimeoutStrategyOptions
        {
            TimeoutGenerator = args => ValueTask.FromResult(
                args.Context.GetRequestMessage()?.Options.TryGetValue(WebhookSender.TimeoutKey, out var timeout) == true
                    ? timeout
                    : TimeSpan.FromSeconds(WebhookSubscription.DefaultTimeoutSeconds)),
        }));
        // Added after the resilience handler, so it runs inside it: the body read counts against the deadline.
        services.AddTransient<BoundedResponseBodyHandler>();
        client.AddHttpMessageHandler<BoundedResponseBodyHandler>();
    }

    /// <summary>The delivery feature's part in the bus: one fan-out consumer per event type and the delivery consumer.</summary>
    private sealed class DeliveryEndpoints : IBusContributor
    {
        private static readonly Type[] FanOutConsumers =
            [.. EventCatalog.All.Select(t => typeof(FanOutConsumer<>).MakeGenericType(t.ContractType))];

        public void AddConsumers(IBusRegistrationConfigurator bus)
        {
            foreach (var consumer in FanOutConsumers)
                bus.AddConsumer(consumer);
            bus.AddConsumer<DeliveryConsumer>();
        }

        public void ConfigureEndpoints(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator bus)
        {
            var o = context.GetRequiredService<IOptions<DeliveryOptions>>().Value;
            // Incoming events: an offset is honoured, no offset means UTC (not the host's zone).
            bus.ConfigureJsonSerializerOptions(IncomingEventJson.Configure);
            // Consumers only wait for a batched insert (fan-out) or hand over in memory (delivery),
            // so a message in progress costs no thread: let as many run as the broker sends ahead.
            bus.ReceiveEndpoint(DeliveryQueues.FanOut, e =>
            {
                // First, before the message is read: an event far over the payload cap is parked unread.
                e.UseMessageSizeLimit(context, o.MaxReceivedEventBytes, bytes => EventSizeLimit.ReceivedReason(bytes, o.MaxEventBytes));
                e.UseDispatcherDefaults(context, o.TransientRedeliveries);
                e.PrefetchCount = o.PrefetchCount;
                e.ConcurrentMessageLimit = o.PrefetchCount;
                foreach (var consumer in FanOutConsumers)
                    e.ConfigureConsumer(context, consumer);
            });
            bus.ReceiveEndpoint(DeliveryQueues.Delivery, e =>
            {
                e.UseDispatcherDefaults(context, o.TransientRedeliveries);
                e.PrefetchCount = o.PrefetchCount;
                e.ConcurrentMessageLimit = o.PrefetchCount;
                e.ConfigureConsumer<DeliveryConsumer>(context);
            });
        }
    }
}
