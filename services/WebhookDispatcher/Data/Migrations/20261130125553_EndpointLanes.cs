using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <inheritdoc />
    public partial class EndpointLanes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // UUID version 7 (RFC 9562 §5.7): 48 bits of unix milliseconds, then random bits. Made
            // from a random (version 4) UUID whose first 6 bytes become the time and whose version
            // nibble turns from 0100 into 0111 (bits 52 and 53, counted from the right of each byte).
            migrationBuilder.Sql("""
                CREATE OR REPLACE FUNCTION webhook_uuid_v7() RETURNS uuid
                LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
                  SELECT encode(set_bit(set_bit(
                      overlay(uuid_send(gen_random_uuid())
                              PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                              FROM 1 FOR 6),
                      52, 1), 53, 1), 'hex')::uuid
                $$;
                """);

            migrationBuilder.DropIndex(
                name: "ix_webhook_deliveries_event_id",
                table: "webhook_deliveries");

            migrationBuilder.AddColumn<int>(
                name: "rate_limit_per_second",
                table: "webhook_subscriptions",
                type: "integer",
                nullable: true);

            migrationBuilder.AlterColumn<Guid>(
                name: "id",
                table: "webhook_deliveries",
                type: "uuid",
                nullable: false,
                defaultValueSql: "webhook_uuid_v7()",
                oldClrType: typeof(Guid),
                oldType: "uuid",
                oldDefaultValueSql: "gen_random_uuid()");

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "held_until",
                table: "webhook_deliveries",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddCheckConstraint(
                name: "ck_webhook_subscriptions_rate_limit_per_second",
                table: "webhook_subscriptions",
                sql: "rate_limit_per_second BETWEEN 1 AND 10000");

            migrationBuilder.CreateIndex(
                name: "ix_webhook_deliveries_backlog",
                table: "webhook_deliveries",
                columns: new[] { "subscription_id", "id" },
                filter: "status IN ('pending', 'retrying') AND next_retry_at IS NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropCheckConstraint(
                name: "ck_webhook_subscriptions_rate_limit_per_second",
                table: "webhook_subscriptions");

            migrationBuilder.DropIndex(
                name: "ix_webhook_deliveries_backlog",
                table: "webhook_deliveries");

            migrationBuilder.DropColumn(
                name: "rate_limit_per_second",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "held_until",
                table: "webhook_deliveries");

            migrationBuilder.AlterColumn<Guid>(
                name: "id",
                table: "webhook_deliveries",
                type: "uuid",
                nullable: false,
                defaultValueSql: "gen_random_uuid()",
                oldClrType: typeof(Guid),
                oldType: "uuid",
                oldDefaultValueSql: "webhook_uuid_v7()");

            migrationBuilder.CreateIndex(
                name: "ix_webhook_deliveries_event_id",
                table: "webhook_deliveries",
                column: "event_id");

            migrationBuilder.Sql("DROP FUNCTION webhook_uuid_v7()");
        }
    }
}
