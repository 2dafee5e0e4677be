using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Deliveries;

/// <summary>Registers the delivery feature: the outbound HttpClient, the store and the reconciler.</summary>
public static class DeliveryExtensions
{
    /// <summary>Adds <see cref="WebhookSender"/> with its <c>webhooks</c> HttpClient, <see cref="DeliveryStore"/> and, for workers, the reconciler.</summary>
    public static IHostApplicationBuilder AddDeliveries(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<DeliveryOptions>().BindConfiguration(DeliveryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<ReconcilerOptions>().BindConfiguration(ReconcilerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<DeliveryStore>();
        builder.Services.AddSingleton<WebhookSender>();
        builder.Services.AddTransient<BoundedResponseBodyHandler>();

        var client = builder.Services.AddHttpClient(WebhookSender.ClientName, client => client.Timeout = Timeout.InfiniteTimeSpan);
        client.ConfigurePrimaryHttpMessageHandler(services => new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                UseCookies = false,
                UseProxy = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
                // Past the 64 KiB read, close the connection: the default drains up to 1 MiB more in
                // the background to reuse it, so a hostile receiver could make every attempt read 1 MiB.
                MaxResponseDrainSize = 0,
                // A WebhookNetwork is registered only by tests (name resolution and connect); null is DNS and sockets.
                ConnectCallback = PrivateNetworkGuard.ConnectCallback(
                    services.GetRequiredService<IOptions<DeliveryOptions>>().Value.AllowPrivateNetworks, services.GetService<WebhookNetwork>()),
            });
        // The resilience pipeline owns the per-attempt deadline; retries belong to the broker.
        client.AddResilienceHandler("webhook-attempt", pipeline => pipeline.AddTimeout(new HttpTimeoutStrategyOptions
            {
                TimeoutGenerator = args => ValueTask.FromResult(
                    args.Context.GetRequestMessage()?.Options.TryGetValue(WebhookSender.TimeoutKey, out var timeout) == true
                        ? timeout
                        : TimeSpan.FromSeconds(Subscriptions.WebhookSubscription.DefaultTimeoutSeconds)),
            }));
        // Added after the resilience handler, so it runs inside it: the body read counts against the deadline.
        client.AddHttpMessageHandler<BoundedResponseBodyHandler>();

        var workers = builder.Configuration.GetSection(DispatcherOptions.Section).Get<DispatcherOptions>()?.Workers ?? true;
        if (workers)
        {
            builder.Services.AddSingleton<DeliveryReconciler>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryReconciler>());
        }
        return builder;
    }
}
