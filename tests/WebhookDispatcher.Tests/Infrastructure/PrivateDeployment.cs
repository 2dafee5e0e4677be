using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// A deployment of a test's own, for tests that act on the broker as an operator: a database
/// (<see cref="ScratchDatabase"/>) and a RabbitMQ virtual host nobody else uses, so no other
/// test's reconciler or consumers take its deliveries and what it purges or deletes disturbs no
/// one. Its dispatcher (<see cref="IsolatedDispatcher"/>, production settings) runs the reconciler
/// every second with the default grace (10 s), and can be stopped and started again on the same
/// database and virtual host.
/// </summary>
public sealed class PrivateDeployment : IAsyncDisposable
{
    /// <summary>Seconds between the reconciler's passes here.</summary>
    public const int ReconcilerIntervalSeconds = 1;

    /// <summary>How overdue a delivery must be before the reconciler re-publishes it (the default).</summary>
    public static readonly TimeSpan ReconcilerGrace = TimeSpan.FromSeconds(new ReconcilerOptions().GraceSeconds);

    /// <summary>The longest a lost message can wait for the reconciler: its grace plus one interval.</summary>
    public static readonly TimeSpan ReconcilerBound = ReconcilerGrace + TimeSpan.FromSeconds(ReconcilerIntervalSeconds);

    private readonly ScratchDatabase _database;
    private readonly IReadOnlyDictionary<string, string?> _settings;

    private PrivateDeployment(ScratchDatabase database, string virtualHost, IReadOnlyDictionary<string, string?> settings)
    {
        _database = database;
        VirtualHost = virtualHost;
        _settings = settings;
    }

    /// <summary>The deployment's virtual host.</summary>
    public string VirtualHost { get; }

    /// <summary>The running dispatcher; null between <see cref="StopAsync"/> and <see cref="StartDispatcherAsync"/>.</summary>
    public IsolatedDispatcher? Dispatcher { get; private set; }

    /// <summary>Creates the database (migrated) and virtual host and starts a dispatcher; <paramref name="settings"/> add to or override its own.</summary>
    public static async Task<PrivateDeployment> StartAsync(IReadOnlyDictionary<string, string?>? settings = null)
    {
        var database = await ScratchDatabase.CreateAsync("operator", migrate: true);
        var vhost = await Broker.CreateVirtualHostAsync("operator");
        var all = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Delivery:AllowPrivateNetworks"] = "true",
            ["Reconciler:IntervalSeconds"] = ReconcilerIntervalSeconds.ToString(),
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) all[key] = value;
        var deployment = new PrivateDeployment(database, vhost, all);
        try
        {
            await deployment.StartDispatcherAsync();
        }
        catch
        {
            await deployment.DisposeAsync();
            throw;
        }
        return deployment;
    }

    /// <summary>Starts the dispatcher (again) on the same database and virtual host.</summary>
    public async Task StartDispatcherAsync()
    {
        if (Dispatcher is not null) throw new InvalidOperationException("The dispatcher runs already.");
        Dispatcher = await IsolatedDispatcher.StartAsync(_settings, virtualHost: VirtualHost);
    }

    /// <summary>Stops the dispatcher gracefully (attempts in flight are recorded, their retries sent).</summary>
    public async Task StopAsync()
    {
        if (Dispatcher is not null) await Dispatcher.DisposeAsync();
        Dispatcher = null;
    }

    private IServiceProvider Services => (Dispatcher ?? throw new InvalidOperationException("The dispatcher is stopped.")).Services;

    /// <summary>Stores an active subscription of <paramref name="userId"/> to <c>email.received</c>.</summary>
    public async Task<Guid> SubscribeAsync(string userId, string url, int retryCount = 3, int timeoutSeconds = 10)
    {
        var subscription = new WebhookSubscription
        {
            Id = Guid.NewGuid(),
            UserId = userId,
            Url = url,
            EventTypes = ["email.received"],
            Secret = WebhookSigner.NewSecret(),
            RetryCount = retryCount,
            TimeoutSeconds = timeoutSeconds,
            IsActive = true,
        };
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<WebhookDbContext>();
        db.Subscriptions.Add(subscription);
        await db.SaveChangesAsync();
        return subscription.Id;
    }

    /// <summary>The deliveries of a subscription with their attempts (oldest attempt first), read from the deployment's database.</summary>
    public async Task<List<WebhookDelivery>> DeliveriesAsync(Guid subscriptionId)
    {
        var options = new DbContextOptionsBuilder<WebhookDbContext>();
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(_database.ConnectionString);
        DataExtensions.Configure(options, dataSource);
        await using var db = new WebhookDbContext(options.Options);
        return await db.Deliveries.AsNoTracking().Include(d => d.Attempts.OrderBy(a => a.AttemptNumber))
            .Where(d => d.SubscriptionId == subscriptionId).ToListAsync();
    }

    /// <summary>Runs one statement in the deployment's database.</summary>
    public Task ExecuteAsync(string sql) => _database.ExecuteInAsync(sql);

    /// <summary>Waits until <paramref name="queue"/> holds at least <paramref name="count"/> ready messages; false on timeout.</summary>
    public Task<bool> QueueHoldsAsync(string queue, uint count, TimeSpan timeout) =>
        Infrastructure.Dispatcher.EventuallyAsync(async () => (await RabbitManagement.CountAsync(queue, VirtualHost))?.Messages >= count, timeout);

    /// <summary>Stops the dispatcher, then removes the virtual host and the database.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await Broker.DeleteVirtualHostAsync(VirtualHost);
        await _database.DisposeAsync();
    }
}
