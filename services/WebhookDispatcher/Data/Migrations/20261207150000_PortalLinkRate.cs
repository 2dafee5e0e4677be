using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// An index on the portal links by whose portal they open (the user, or the operator) and when
    /// they were made, for the per-minute limit on minting them (<c>Portal:LinksPerMinute</c>). The
    /// model is unchanged (the portal's statements are raw SQL), so this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207150000_PortalLinkRate")]
    public partial class PortalLinkRate : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("CREATE INDEX ix_webhook_portal_sessions_owner_created ON webhook_portal_sessions ((coalesce(user_id, operator)), created_at);");

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("DROP INDEX ix_webhook_portal_sessions_owner_created;");
    }
}
