using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Data.Configurations;

internal sealed class WebhookDeliveryAttemptConfiguration : IEntityTypeConfiguration<WebhookDeliveryAttempt>
{
    public void Configure(EntityTypeBuilder<WebhookDeliveryAttempt> b)
    {
        // Partitioned by delivery_id like webhook_deliveries by id (see the PartitionedHistory
        // migration), so a day's attempts are dropped with the day's deliveries.
        b.ToTable("webhook_delivery_attempts");
        b.HasKey(a => new { a.DeliveryId, a.AttemptNumber });
        b.Property(a => a.Outcome).HasMaxLength(32);
        b.Property(a => a.ErrorMessage).HasMaxLength(1024);
        b.Property(a => a.ResponseExcerpt).HasMaxLength(WebhookDelivery.MaxStoredResponseChars);
    }
}
