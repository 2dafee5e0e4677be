using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Notely.Events;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>The dispatcher under test, hosted in-process on the real database and broker.</summary>
public sealed class DispatcherFactory : WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Postgres", TestInfrastructure.Postgres);
        builder.UseSetting("ConnectionStrings:RabbitMq", TestInfrastructure.RabbitMq);
        builder.UseSetting("Database:MigrateOnStartup", "true");
        // Test receivers listen on 127.0.0.1.
        builder.UseSetting("Delivery:AllowPrivateNetworks", "true");
        builder.UseSetting("Reconciler:IntervalSeconds", "3600");
        // Tests run reconciler passes by hand, right away; the settle rule has a test of its own.
        builder.UseSetting("Reconciler:SettleSeconds", "0");
        builder.UseSetting("Auth:SigningKey", TestTokens.SigningKey);
        builder.UseSetting("Sealing:MainKey", TestTokens.SealingKey);
    }
}

/// <summary>
/// One dispatcher shared by the tests of a run; <see cref="RestartAsync"/> stops it and starts a
/// new process-like instance (only from <c>[NonParallelizable]</c> tests).
/// </summary>
public static class Dispatcher
{
    private static DispatcherFactory? _factory;

    /// <summary>The running instance's services.</summary>
    public static IServiceProvider Services => (_factory ?? throw new InvalidOperationException("Dispatcher not started")).Services;

    internal static Task StartAsync()
    {
        _factory = new DispatcherFactory();
        _ = _factory.Services; // builds and starts the host: migrations, bus, consumers
        return Task.CompletedTask;
    }

    internal static async Task StopAsync()
    {
        if (_factory is not null) await _factory.DisposeAsync();
        _factory = null;
    }

    /// <summary>An HttpClient to the in-process API.</summary>
    public static HttpClient CreateClient() => (_factory ?? throw new InvalidOperationException("Dispatcher not started")).CreateClient();

    /// <summary>Stops the dispatcher, waits <paramref name="downtime"/>, starts a new one.</summary>
    public static async Task RestartAsync(TimeSpan downtime)
    {
        await StopAsync();
        await Task.Delay(downtime);
        await StartAsync();
    }

    /// <summary>Publishes an event on the broker, as a Notely service would.</summary>
    public static async Task PublishAsync<TEvent>(TEvent evt) where TEvent : class, INotelyEvent
    {
        await using var scope = Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<IPublishEndpoint>().Publish(evt);
    }

    /// <summary>Stores a subscription directly (the management API is another issue).</summary>
    public static async Task<WebhookSubscription> SubscribeAsync(string userId, string url, string[] eventTypes,
        int retryCount = 3, int timeoutSeconds = 10, bool isActive = true, int? rateLimitPerSecond = null, string ordering = SubscriptionOrdering.None)
    {
        var subscription = new WebhookSubscription
        {
            Id = Guid.NewGuid(),
            UserId = userId,
            Url = url,
            EventTypes = [.. eventTypes],
            Secret = WebhookSigner.NewSecret(),
            RetryCount = retryCount,
            TimeoutSeconds = timeoutSeconds,
            IsActive = isActive,
            RateLimitPerSecond = rateLimitPerSecond,
            Ordering = ordering,
        };
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<WebhookDbContext>();
        db.Subscriptions.Add(subscription);
        await db.SaveChangesAsync();
        return subscription;
    }

    /// <summary>The plain text of a value stored sealed (secrets, private keys, credential headers), as the dispatcher opens it.</summary>
    public static string? Unseal(string? stored) => stored is null ? null : Services.GetRequiredService<SecretSealer>().Unseal(stored);

    /// <summary>Runs a query on a fresh context.</summary>
    public static async Task<T> QueryAsync<T>(Func<WebhookDbContext, Task<T>> query)
    {
        await using var scope = Services.CreateAsyncScope();
        return await query(scope.ServiceProvider.GetRequiredService<WebhookDbContext>());
    }

    /// <summary>The deliveries of a subscription with their attempts (oldest attempt first).</summary>
    public static Task<List<WebhookDelivery>> DeliveriesAsync(Guid subscriptionId) =>
        QueryAsync(db => db.Deliveries.AsNoTracking()
            .Include(d => d.Attempts.OrderBy(a => a.AttemptNumber))
            .Where(d => d.SubscriptionId == subscriptionId).ToListAsync());

    /// <summary>Waits until the subscription's only delivery has <paramref name="status"/>; false on timeout.</summary>
    public static Task<bool> DeliveryReachesAsync(Guid subscriptionId, string status, TimeSpan timeout) =>
        EventuallyAsync(async () => (await DeliveriesAsync(subscriptionId)).SingleOrDefault()?.Status == status, timeout);

    /// <summary>Polls <paramref name="condition"/> every 200 ms until it holds or <paramref name="timeout"/> passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition()) return true;
            await Task.Delay(200);
        }
        return await condition();
    }
}
