using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Batched deliveries (docs/decisions/0015): the subscription's <c>batch_max_events</c>,
    /// <c>batch_max_wait_ms</c> and <c>batch_max_bytes</c> (all null: batching off, every existing
    /// row); a delivery's <c>batch_id</c> (a member: the batch that carries it) and
    /// <c>batch_size</c> (a batch: its member count); the status <c>batched</c>; two small partial
    /// indexes (members by batch, members still waiting for one); and the trigger that gives a
    /// batch's members its status whenever the batch's status changes, whichever statement changed
    /// it (the recorder, a cancel, the reconciler, a manual retry). Replacing the status check
    /// validates every partition once under the table's lock, and the two indexes are built on
    /// every partition: on a large history the migration takes as long as a scan of it. The
    /// snapshot carries the model; this migration no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207130000_BatchedDeliveries")]
    public partial class BatchedDeliveries : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_subscriptions
                    ADD COLUMN batch_max_events integer,
                    ADD COLUMN batch_max_wait_ms integer,
                    ADD COLUMN batch_max_bytes integer,
                    ADD CONSTRAINT ck_webhook_subscriptions_batch CHECK (
                        (batch_max_events IS NULL AND batch_max_wait_ms IS NULL AND batch_max_bytes IS NULL)
                        OR (batch_max_events BETWEEN 1 AND 100 AND batch_max_wait_ms BETWEEN 0 AND 10000 AND batch_max_bytes >= 1024));

                ALTER TABLE webhook_deliveries
                    ADD COLUMN batch_id uuid,
                    ADD COLUMN batch_size integer,
                    DROP CONSTRAINT ck_webhook_deliveries_status,
                    ADD CONSTRAINT ck_webhook_deliveries_status
                        CHECK (status IN ('pending', 'retrying', 'success', 'failed', 'cancelled', 'batched'));

                -- A batch's members (the trigger below, the delivery detail).
                CREATE INDEX ix_webhook_deliveries_batch ON webhook_deliveries (batch_id) WHERE batch_id IS NOT NULL;
                -- An ordered subscription's unfinished batches: the claim's gate looks for an earlier one before any
                -- delivery of the subscription starts (Deliveries/Ordering/OrderingGate.cs). Small: only such rows.
                CREATE INDEX ix_webhook_deliveries_open_batches ON webhook_deliveries (subscription_id, occurred_at, id)
                    WHERE batch_size IS NOT NULL AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying');
                -- Members waiting for a batch: the sweep's scan (Deliveries/Batching/BatchStore.cs). Small: only such rows.
                CREATE INDEX ix_webhook_deliveries_unbatched ON webhook_deliveries (created_at) WHERE status = 'batched' AND batch_id IS NULL;

                -- A batch's members follow its status: its final one (success, failed, cancelled) when
                -- it ends, and 'batched' again when a manual retry restarts it. Fires only for batch
                -- rows whose status changed (the WHEN clause), so other deliveries pay one test.
                CREATE FUNCTION webhook_batch_members_follow() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE webhook_deliveries m
                    SET status = CASE WHEN NEW.status IN ('success', 'failed', 'cancelled') THEN NEW.status ELSE 'batched' END,
                        completed_at = CASE WHEN NEW.status IN ('success', 'failed', 'cancelled') THEN NEW.completed_at END,
                        response_status_code = NEW.response_status_code,
                        error_message = NEW.error_message
                    WHERE m.batch_id = NEW.id;
                    RETURN NULL;
                END $$;

                CREATE TRIGGER webhook_batch_members_follow
                    AFTER UPDATE OF status ON webhook_deliveries
                    FOR EACH ROW WHEN (NEW.batch_size IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
                    EXECUTE FUNCTION webhook_batch_members_follow();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                DROP TRIGGER webhook_batch_members_follow ON webhook_deliveries;
                DROP FUNCTION webhook_batch_members_follow();
                DROP INDEX ix_webhook_deliveries_unbatched;
                DROP INDEX ix_webhook_deliveries_open_batches;
                DROP INDEX ix_webhook_deliveries_batch;
                UPDATE webhook_deliveries SET status = 'pending', next_retry_at = now() WHERE status = 'batched' AND batch_id IS NULL;
                UPDATE webhook_deliveries SET status = 'cancelled', completed_at = now() WHERE status = 'batched';
                ALTER TABLE webhook_deliveries
                    DROP CONSTRAINT ck_webhook_deliveries_status,
                    ADD CONSTRAINT ck_webhook_deliveries_status CHECK (status IN ('pending', 'retrying', 'success', 'failed', 'cancelled')),
                    DROP COLUMN batch_id,
                    DROP COLUMN batch_size;
                ALTER TABLE webhook_subscriptions
                    DROP CONSTRAINT ck_webhook_subscriptions_batch,
                    DROP COLUMN batch_max_events,
                    DROP COLUMN batch_max_wait_ms,
                    DROP COLUMN batch_max_bytes;
                """);
    }
}
