using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Payload filters and templates per subscription (Shaping/): <c>filter</c> (the owner's JSON),
    /// <c>filter_path</c> (its SQL/JSON path predicate, evaluated by the fan-out's INSERT) and
    /// <c>template</c> (a built-in's name or a Liquid template, rendered at attempt time). All
    /// nullable: existing subscriptions keep receiving every event of their types, unchanged. The
    /// model snapshot carries the three properties; this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207110000_SubscriptionShaping")]
    public partial class SubscriptionShaping : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_subscriptions
                    ADD COLUMN filter text,
                    ADD COLUMN filter_path jsonpath,
                    ADD COLUMN template text;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("ALTER TABLE webhook_subscriptions DROP COLUMN filter, DROP COLUMN filter_path, DROP COLUMN template;");
    }
}
