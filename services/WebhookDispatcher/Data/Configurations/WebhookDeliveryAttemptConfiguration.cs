using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Data.Configurations;

internal sealed class WebhookDeliveryAttemptConfiguration : IEntityTypeConfiguration<WebhookDeliveryAttempt>
{
    public void Configure(EntityTypeBuilder<WebhookDeliveryAttempt> b)
    {
        b.ToTable("webhook_delivery_attempts");
        b.HasKey(a => a.Id);
        b.Property(a => a.Id).UseIdentityAlwaysColumn();
        b.Property(a => a.Outcome).HasMaxLength(32);
        b.Property(a => a.ErrorMessage).HasMaxLength(1024);
        b.Property(a => a.ResponseExcerpt).HasMaxLength(WebhookDelivery.MaxStoredResponseChars);
        b.HasIndex(a => new { a.DeliveryId, a.AttemptNumber });
    }
}
