using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Data;

/// <summary>The dispatcher's PostgreSQL schema: subscriptions, deliveries and their attempts.</summary>
/// <remarks>
/// Add a migration from the repository root with
/// <c>dotnet ef migrations add &lt;Name&gt; --project services/WebhookDispatcher --output-dir Data/Migrations</c>;
/// apply them with <c>dotnet run --project services/WebhookDispatcher -- migrate</c> (production) or
/// by <c>Database:MigrateOnStartup</c> (development).
/// </remarks>
public sealed class WebhookDbContext(DbContextOptions<WebhookDbContext> options) : DbContext(options)
{
    /// <summary>Subscriptions (<c>webhook_subscriptions</c>).</summary>
    public DbSet<WebhookSubscription> Subscriptions => Set<WebhookSubscription>();

    /// <summary>Deliveries (<c>webhook_deliveries</c>).</summary>
    public DbSet<WebhookDelivery> Deliveries => Set<WebhookDelivery>();

    /// <summary>Attempts (<c>webhook_delivery_attempts</c>).</summary>
    public DbSet<WebhookDeliveryAttempt> DeliveryAttempts => Set<WebhookDeliveryAttempt>();

    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(WebhookDbContext).Assembly);
}
