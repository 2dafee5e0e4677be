using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Data.Configurations;

internal sealed class WebhookSubscriptionConfiguration : IEntityTypeConfiguration<WebhookSubscription>
{
    public void Configure(EntityTypeBuilder<WebhookSubscription> b)
    {
        b.ToTable("webhook_subscriptions", t =>
        {
            t.HasCheckConstraint("ck_webhook_subscriptions_retry_count",
                $"retry_count BETWEEN 0 AND {WebhookSubscription.MaxRetryCount}");
            t.HasCheckConstraint("ck_webhook_subscriptions_timeout_seconds",
                $"timeout_seconds BETWEEN {WebhookSubscription.MinTimeoutSeconds} AND {WebhookSubscription.MaxTimeoutSeconds}");
            t.HasCheckConstraint("ck_webhook_subscriptions_rate_limit_per_second",
                $"rate_limit_per_second BETWEEN 1 AND {WebhookSubscription.MaxRateLimitPerSecond}");
        });
        b.HasKey(s => s.Id);
        b.Property(s => s.Id).HasDefaultValueSql("gen_random_uuid()");
        b.Property(s => s.UserId).HasMaxLength(256);
        b.Property(s => s.Url).HasMaxLength(WebhookSubscription.MaxUrlLength);
        b.Property(s => s.EventTypes).HasColumnType("text[]");
        // Sealed values (Security/SecretSealer.cs) are longer than the secrets they hold.
        b.Property(s => s.Secret).HasMaxLength(512);
        b.Property(s => s.PreviousSecret).HasMaxLength(512);
        b.Property(s => s.Headers).HasColumnType("json");
        b.Property(s => s.SignatureScheme).HasMaxLength(16);
        b.Property(s => s.Ordering).HasMaxLength(16).HasDefaultValue(Deliveries.SubscriptionOrdering.None);
        b.Property(s => s.SigningKey).HasMaxLength(512);
        b.Property(s => s.PreviousSigningKey).HasMaxLength(512);
        b.Property(s => s.Description).HasMaxLength(1024);
        b.Property(s => s.DisabledReason).HasMaxLength(32);
        b.Property(s => s.FailuresSinceSuccess).HasDefaultValue(0);
        b.Property(s => s.FilterPath).HasColumnType("jsonpath");
        // No database defaults for is_active, retry_count and timeout_seconds: EF omits a property
        // whose value is the CLR default (false, 0) when the column has one, which turned
        // retry_count 0 into 3. The entity's initialisers are the defaults.
        b.Property(s => s.TotalDeliveries).HasDefaultValue(0L);
        b.Property(s => s.SuccessfulDeliveries).HasDefaultValue(0L);
        b.Property(s => s.FailedDeliveries).HasDefaultValue(0L);
        b.Property(s => s.CreatedAt).HasDefaultValueSql("now()");
        b.Property(s => s.UpdatedAt).HasDefaultValueSql("now()");

        b.HasQueryFilter(s => s.DeletedAt == null);
        b.HasIndex(s => new { s.UserId, s.IsActive });
        b.HasIndex(s => s.EventTypes).HasMethod("gin");
        b.HasIndex(s => s.CreatedAt);
        // The disable notices still to publish: almost always empty.
        b.HasIndex(s => s.DisabledNoticePending).HasFilter("disabled_notice_pending").HasDatabaseName("ix_webhook_subscriptions_disabled_notice");
    }
}
