using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Large payloads stored once per event (docs/decisions/0009): <c>webhook_event_payloads</c>,
    /// partitioned by day of its UUID version 7 id like the deliveries, holds the payloads of
    /// <see cref="Deliveries.EventPayloads.SeparateFromChars"/> characters or more; their deliveries
    /// point at it (<c>payload_id</c>) and keep <c>payload</c> null. Smaller payloads stay in each
    /// delivery row. <c>webhook_ensure_history_partitions</c> makes the payload partitions beside
    /// the other two. The model only loses <c>payload</c>'s NOT NULL (<c>payload_id</c> is read by
    /// raw SQL only, as <c>held_by</c>), so this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261206230000_EventPayloads")]
    public partial class EventPayloads : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_deliveries ALTER COLUMN payload DROP NOT NULL;
                ALTER TABLE webhook_deliveries ADD COLUMN payload_id uuid;

                CREATE TABLE webhook_event_payloads (
                    id uuid NOT NULL,
                    event_id uuid NOT NULL,
                    payload text NOT NULL,
                    CONSTRAINT pk_webhook_event_payloads PRIMARY KEY (id)
                ) PARTITION BY RANGE (id);

                CREATE OR REPLACE FUNCTION webhook_ensure_history_partitions(first_day date, last_day date) RETURNS integer
                LANGUAGE plpgsql AS $$
                -- Creates the missing day partitions of webhook_deliveries, webhook_delivery_attempts
                -- and webhook_event_payloads from first_day to last_day (UTC days) and returns how
                -- many tables it made. Each is created on its own and then attached: ATTACH takes
                -- a lock that lets reads and writes of the parent go on.
                DECLARE
                  day date := first_day;
                  made integer := 0;
                  deliveries text;
                  attempts text;
                  payloads text;
                BEGIN
                  WHILE day <= last_day LOOP
                    deliveries := 'webhook_deliveries_' || to_char(day, 'YYYYMMDD');
                    attempts := 'webhook_delivery_attempts_' || to_char(day, 'YYYYMMDD');
                    payloads := 'webhook_event_payloads_' || to_char(day, 'YYYYMMDD');
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
                    IF to_regclass(payloads) IS NULL THEN
                      EXECUTE format('CREATE TABLE %I (LIKE webhook_event_payloads INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', payloads);
                      EXECUTE format('ALTER TABLE webhook_event_payloads ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                                     payloads, webhook_history_bound(day), webhook_history_bound(day + 1));
                      made := made + 1;
                    END IF;
                    day := day + 1;
                  END LOOP;
                  RETURN made;
                END
                $$;

                -- From yesterday to two weeks ahead (PartitionMaintenance makes the rest): the
                -- fan-out may store a payload as soon as this version starts.
                SELECT webhook_ensure_history_partitions((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 14);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            throw new NotSupportedException("EventPayloads cannot be reverted: deliveries made since point at payloads in their own table; restore a backup taken before it.");
    }
}
