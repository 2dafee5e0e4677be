using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Data.Configurations;

internal sealed class WebhookDeliveryConfiguration : IEntityTypeConfiguration<WebhookDelivery>
{
    public void Configure(EntityTypeBuilder<WebhookDelivery> b)
    {
        // Partitioned by RANGE (id), one partition per UTC day of the ids' UUID version 7 time, so
        // retention drops whole days (see the PartitionedHistory migration and HistoryRetention).
        // Each partition also has a unique index on (subscription_id, event_id), which the model
        // cannot show: a unique index on the parent would have to include id.
        b.ToTable("webhook_deliveries", t => t.HasCheckConstraint("ck_webhook_deliveries_status",
            $"status IN ({string.Join(", ", DeliveryStatus.All.Select(s => $"'{s}'"))})"));
        b.HasKey(d => d.Id);
        // Time-ordered ids (UUID version 7): new rows land at the right edge of the primary key
        // instead of on random pages, and ids sort by creation.
        b.Property(d => d.Id).HasDefaultValueSql("webhook_uuid_v7()");
        b.Property(d => d.EventType).HasMaxLength(64);
        // text, not jsonb: jsonb re-formats, and the signed bytes must be exactly the stored bytes.
        b.Property(d => d.Payload).HasColumnType("text");
        b.Property(d => d.Status).HasMaxLength(16);
        b.Property(d => d.ResponseBody).HasMaxLength(WebhookDelivery.MaxStoredResponseChars);
        b.Property(d => d.ErrorMessage).HasMaxLength(1024);
        b.Property(d => d.CreatedAt).HasDefaultValueSql("now()");
        b.Property(d => d.LostAttempts).HasDefaultValue(0);
        b.Property(d => d.InFlight).HasDefaultValue(false);
        b.Property(d => d.RoundFirstAttempt).HasDefaultValue(1);

        b.HasOne<WebhookSubscription>().WithMany().HasForeignKey(d => d.SubscriptionId).OnDelete(DeleteBehavior.Cascade);
        // The model keeps the relationship for Include(); the database has no foreign key between
        // the two partitioned tables (retention drops a day of both together).
        b.HasMany(d => d.Attempts).WithOne().HasForeignKey(a => a.DeliveryId).OnDelete(DeleteBehavior.Cascade);

        b.HasIndex(d => new { d.SubscriptionId, d.CreatedAt }).IsDescending(false, true);
        // The reconciler's scan: only unfinished deliveries, by due time.
        b.HasIndex(d => d.NextRetryAt)
            .HasFilter($"status IN ('{DeliveryStatus.Pending}', '{DeliveryStatus.Retrying}')")
            .HasDatabaseName("ix_webhook_deliveries_due");
        // Backlogs: due deliveries that did not fit in a replica's lane wait here (next_retry_at
        // null) until the lane has room. Small: only such rows are in it.
        b.HasIndex(d => new { d.SubscriptionId, d.Id })
            .HasFilter($"status IN ('{DeliveryStatus.Pending}', '{DeliveryStatus.Retrying}') AND next_retry_at IS NULL")
            .HasDatabaseName("ix_webhook_deliveries_backlog");
    }
}
