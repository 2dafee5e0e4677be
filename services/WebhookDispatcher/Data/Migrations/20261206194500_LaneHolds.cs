using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Holds by dispatcher, not by row: a delivery waiting in a dispatcher's lane or backlog names
    /// the dispatcher once (<c>held_by</c>), and the dispatcher keeps all its holds alive with one
    /// heartbeat row (<c>webhook_dispatchers</c>), which also lists the subscriptions whose
    /// backlog it drains. The model is unchanged (the statements are raw SQL), so this migration
    /// carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261206194500_LaneHolds")]
    public partial class LaneHolds : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_deliveries ADD COLUMN held_by uuid;
                CREATE TABLE webhook_dispatchers (
                    id uuid PRIMARY KEY,
                    alive_until timestamptz NOT NULL,
                    backlogged uuid[] NOT NULL DEFAULT '{}');
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                DROP TABLE webhook_dispatchers;
                ALTER TABLE webhook_deliveries DROP COLUMN held_by;
                """);
    }
}
