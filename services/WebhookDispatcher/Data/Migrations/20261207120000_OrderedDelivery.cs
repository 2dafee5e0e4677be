using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Ordered delivery (decision 0014): <c>webhook_subscriptions.ordering</c> (<c>none</c>, the
    /// default for every existing subscription, <c>per_key</c> or <c>strict</c>), and on each
    /// delivery its <c>ordering_key</c> (null when its subscription was not ordered when the event
    /// was fanned out) and the event's <c>occurred_at</c>, which order the deliveries of one key.
    /// The partial index serves the claim's gate and the look-up of a key's next delivery: only
    /// unfinished ordered deliveries are in it. Made on the partitioned parent, so PostgreSQL
    /// makes it on every partition and on those made later. The model snapshot carries the
    /// properties; this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207120000_OrderedDelivery")]
    public partial class OrderedDelivery : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_subscriptions
                    ADD COLUMN ordering character varying(16) NOT NULL DEFAULT 'none',
                    ADD CONSTRAINT ck_webhook_subscriptions_ordering CHECK (ordering IN ('none', 'per_key', 'strict'));
                ALTER TABLE webhook_deliveries
                    ADD COLUMN ordering_key text,
                    ADD COLUMN occurred_at timestamp with time zone;
                CREATE INDEX ix_webhook_deliveries_ordering ON webhook_deliveries (subscription_id, ordering_key, occurred_at, id)
                    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying');
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                DROP INDEX ix_webhook_deliveries_ordering;
                ALTER TABLE webhook_deliveries DROP COLUMN ordering_key, DROP COLUMN occurred_at;
                ALTER TABLE webhook_subscriptions DROP CONSTRAINT ck_webhook_subscriptions_ordering, DROP COLUMN ordering;
                """);
    }
}
