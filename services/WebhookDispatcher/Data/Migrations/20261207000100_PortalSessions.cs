using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Portal links and sessions (<c>webhook_portal_sessions</c>, one row per link: hashes of the
    /// link and session tokens, never the tokens), and an index on the deliveries' event id so the
    /// operator view finds a delivery by its event across all subscriptions. The model is
    /// unchanged (the portal's statements are raw SQL), so this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207000100_PortalSessions")]
    public partial class PortalSessions : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                CREATE TABLE webhook_portal_sessions (
                    id uuid PRIMARY KEY,
                    link_hash bytea NOT NULL UNIQUE,
                    session_hash bytea UNIQUE,
                    user_id varchar(256),
                    operator varchar(256),
                    read_only boolean NOT NULL,
                    created_by varchar(256) NOT NULL,
                    created_at timestamptz NOT NULL,
                    link_expires_at timestamptz NOT NULL,
                    used_at timestamptz,
                    session_expires_at timestamptz,
                    CHECK ((user_id IS NULL) <> (operator IS NULL)));
                CREATE INDEX ix_webhook_deliveries_event_id ON webhook_deliveries (event_id);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                DROP INDEX ix_webhook_deliveries_event_id;
                DROP TABLE webhook_portal_sessions;
                """);
    }
}
