using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <inheritdoc />
    public partial class PartitionedHistory : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Deliveries and attempts become tables partitioned by day, so that retention drops a
            // whole day at once instead of deleting millions of rows (docs/decisions/0005).
            //
            // The partition key is the delivery id, a UUID version 7 whose first 48 bits are its
            // creation time in milliseconds: id-based lookups (claims, records, the API) reach
            // one partition, and no other column has to travel with a delivery's id. Ids of
            // existing deliveries that are not version 7 (made before ids were) are rewritten to
            // version 7 from their created_at, keeping their random bits; a message for such a
            // delivery still waiting in the broker finds nothing, and the reconciler re-publishes
            // the delivery under its new id.
            //
            // (subscription_id, event_id) stays unique within each partition (a unique index on
            // the parent would have to include id); the fan-out also looks for the pair in the
            // partitions of the last two days, which covers every redelivery of an event.
            migrationBuilder.Sql("""
                CREATE FUNCTION webhook_uuid_v7_at(at timestamptz, seed uuid) RETURNS uuid
                LANGUAGE sql STABLE PARALLEL SAFE AS $$
                  -- The time of `at` in the first 48 bits, version 7 (bits 52-55: 0111), variant 10
                  -- (bits 70, 71), everything else from `seed` (bits counted from the right of each byte).
                  SELECT encode(set_bit(set_bit(set_bit(set_bit(set_bit(set_bit(
                      overlay(uuid_send(seed)
                              PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                              FROM 1 FOR 6),
                      52, 1), 53, 1), 54, 1), 55, 0), 70, 0), 71, 1), 'hex')::uuid
                $$;

                CREATE FUNCTION webhook_history_bound(day date) RETURNS uuid
                LANGUAGE sql STABLE PARALLEL SAFE AS $$
                  -- The smallest version 7 id of the first millisecond of `day` (UTC).
                  SELECT webhook_uuid_v7_at(day::timestamp AT TIME ZONE 'UTC', '00000000-0000-0000-0000-000000000000')
                $$;

                CREATE FUNCTION webhook_ensure_history_partitions(first_day date, last_day date) RETURNS integer
                LANGUAGE plpgsql AS $$
                -- Creates the missing day partitions of webhook_deliveries and
                -- webhook_delivery_attempts from first_day to last_day (UTC days) and returns how
                -- many tables it made. Each is created on its own and then attached: ATTACH takes
                -- a lock that lets reads and writes of the parent go on.
                DECLARE
                  day date := first_day;
                  made integer := 0;
                  deliveries text;
                  attempts text;
                BEGIN
                  WHILE day <= last_day LOOP
                    deliveries := 'webhook_deliveries_' || to_char(day, 'YYYYMMDD');
                    attempts := 'webhook_delivery_attempts_' || to_char(day, 'YYYYMMDD');
                    IF to_regclass(deliveries) IS NULL THEN
                      EXECUTE format('CREATE TABLE %I (LIKE webhook_deliveries INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', deliveries);
                      EXECUTE format('CREATE UNIQUE INDEX %I ON %I (subscription_id, event_id)', 'ux_' || deliveries || '_event', deliveries);
                      EXECUTE format('ALTER TABLE webhook_deliveries ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                                     deliveries, webhook_history_bound(day), webhook_history_bound(day + 1));
                      made := made + 1;
                    END IF;
                    IF to_regclass(attempts) IS NULL THEN
                      EXECUTE format('CREATE TABLE %I (LIKE webhook_delivery_attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', attempts);
                      EXECUTE format('ALTER TABLE webhook_delivery_attempts ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                                     attempts, webhook_history_bound(day), webhook_history_bound(day + 1));
                      made := made + 1;
                    END IF;
                    day := day + 1;
                  END LOOP;
                  RETURN made;
                END
                $$;

                ALTER TABLE webhook_delivery_attempts RENAME TO webhook_delivery_attempts_unpartitioned;
                ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_unpartitioned;
                ALTER TABLE webhook_deliveries_unpartitioned RENAME CONSTRAINT pk_webhook_deliveries TO pk_webhook_deliveries_unpartitioned;
                ALTER TABLE webhook_deliveries_unpartitioned RENAME CONSTRAINT ck_webhook_deliveries_status TO ck_webhook_deliveries_unpartitioned_status;
                ALTER TABLE webhook_delivery_attempts_unpartitioned RENAME CONSTRAINT pk_webhook_delivery_attempts TO pk_webhook_delivery_attempts_unpartitioned;
                DROP INDEX ix_webhook_deliveries_backlog;
                DROP INDEX ix_webhook_deliveries_due;
                DROP INDEX ix_webhook_deliveries_subscription_id_created_at;

                CREATE TABLE webhook_deliveries (
                    id uuid NOT NULL DEFAULT webhook_uuid_v7(),
                    subscription_id uuid NOT NULL,
                    event_type character varying(64) NOT NULL,
                    event_id uuid NOT NULL,
                    payload text NOT NULL,
                    status character varying(16) NOT NULL,
                    attempt_count integer NOT NULL,
                    max_attempts integer NOT NULL,
                    response_status_code integer,
                    response_body character varying(4096),
                    error_message character varying(1024),
                    created_at timestamp with time zone NOT NULL DEFAULT now(),
                    first_attempt_at timestamp with time zone,
                    last_attempt_at timestamp with time zone,
                    completed_at timestamp with time zone,
                    next_retry_at timestamp with time zone,
                    held_until timestamp with time zone,
                    CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
                    CONSTRAINT ck_webhook_deliveries_status CHECK (status IN ('pending', 'retrying', 'success', 'failed', 'cancelled')),
                    CONSTRAINT fk_webhook_deliveries_subscriptions_subscription_id FOREIGN KEY (subscription_id)
                        REFERENCES webhook_subscriptions (id) ON DELETE CASCADE
                ) PARTITION BY RANGE (id);
                CREATE INDEX ix_webhook_deliveries_subscription_id_created_at ON webhook_deliveries (subscription_id, created_at DESC);
                CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_retry_at) WHERE status IN ('pending', 'retrying');
                CREATE INDEX ix_webhook_deliveries_backlog ON webhook_deliveries (subscription_id, id)
                    WHERE status IN ('pending', 'retrying') AND next_retry_at IS NULL;

                CREATE TABLE webhook_delivery_attempts (
                    delivery_id uuid NOT NULL,
                    attempt_number integer NOT NULL,
                    attempted_at timestamp with time zone NOT NULL,
                    duration_ms integer NOT NULL,
                    status_code integer,
                    outcome character varying(32) NOT NULL,
                    error_message character varying(1024),
                    response_excerpt character varying(4096),
                    CONSTRAINT pk_webhook_delivery_attempts PRIMARY KEY (delivery_id, attempt_number)
                ) PARTITION BY RANGE (delivery_id);

                SELECT webhook_ensure_history_partitions(
                    (SELECT least(min(created_at), now()) FROM webhook_deliveries_unpartitioned)::date - 1,
                    (now() AT TIME ZONE 'UTC')::date + 14);

                CREATE TEMPORARY TABLE webhook_delivery_ids ON COMMIT DROP AS
                SELECT id AS old_id,
                       CASE WHEN substring(id::text, 15, 1) = '7' THEN id ELSE webhook_uuid_v7_at(created_at, id) END AS new_id
                FROM webhook_deliveries_unpartitioned;

                INSERT INTO webhook_deliveries
                SELECT i.new_id, d.subscription_id, d.event_type, d.event_id, d.payload, d.status, d.attempt_count, d.max_attempts,
                       d.response_status_code, d.response_body, d.error_message, d.created_at, d.first_attempt_at, d.last_attempt_at,
                       d.completed_at, d.next_retry_at, d.held_until
                FROM webhook_deliveries_unpartitioned d JOIN webhook_delivery_ids i ON i.old_id = d.id;

                INSERT INTO webhook_delivery_attempts
                SELECT i.new_id, a.attempt_number, a.attempted_at, a.duration_ms, a.status_code, a.outcome, a.error_message, a.response_excerpt
                FROM webhook_delivery_attempts_unpartitioned a JOIN webhook_delivery_ids i ON i.old_id = a.delivery_id
                ON CONFLICT DO NOTHING;

                DROP TABLE webhook_delivery_attempts_unpartitioned;
                DROP TABLE webhook_deliveries_unpartitioned;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            throw new NotSupportedException("PartitionedHistory cannot be reverted: restore a backup taken before it.");
    }
}
