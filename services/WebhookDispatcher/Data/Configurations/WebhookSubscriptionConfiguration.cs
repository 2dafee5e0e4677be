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
        });
        b.HasKey(s => s.Id);
        b.Property(s => s.Id).HasDefaultValueSql("gen_random_uuid()");
        b.Property(s => s.UserId).HasMaxLength(256);
        b.Property(s => s.Url).HasMaxLength(WebhookSubscription.MaxUrlLength);
        b.Property(s => s.EventTypes).HasColumnType("text[]");
        b.Property(s => s.Secret).HasMaxLength(256);
        b.Property(s => s.PreviousSecret).HasMaxLength(256);
        b.Property(s => s.Description).HasMaxLength(1024);
        b.Property(s => s.IsActive).HasDefaultValue(true);
        b.Property(s => s.RetryCount).HasDefaultValue(WebhookSubscription.DefaultRetryCount);
        b.Property(s => s.TimeoutSeconds).HasDefaultValue(WebhookSubscription.DefaultTimeoutSeconds);
        b.Property(s => s.CreatedAt).HasDefaultValueSql("now()");
        b.Property(s => s.UpdatedAt).HasDefaultValueSql("now()");

        b.HasIndex(s => new { s.UserId, s.IsActive });
        b.HasIndex(s => s.EventTypes).HasMethod("gin");
        b.HasIndex(s => s.CreatedAt);
    }
}
