using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <inheritdoc />
    public partial class InFlightClaims : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "in_flight",
                table: "webhook_deliveries",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            // Claims made before the column existed and not recorded yet.
            migrationBuilder.Sql("""
                UPDATE webhook_deliveries d SET in_flight = true
                WHERE d.status IN ('pending', 'retrying')
                  AND d.attempt_count > (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "in_flight",
                table: "webhook_deliveries");
        }
    }
}
