using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// The operator audit trail (<c>webhook_operator_audit</c>): one row per change an operator
    /// asked for in the operator view (a delivery retried, an endpoint's failed deliveries
    /// recovered), with who, whose, and the answer given. Read newest first, by operator or by
    /// user. Raw SQL only (Portal/OperatorAuditTrail.cs), so this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207020000_OperatorAudit")]
    public partial class OperatorAudit : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                CREATE TABLE webhook_operator_audit (
                    id uuid PRIMARY KEY,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    operator varchar(256) NOT NULL,
                    action varchar(32) NOT NULL CHECK (action IN ('retry_delivery', 'recover_deliveries')),
                    subscription_id uuid NOT NULL,
                    user_id varchar(256) NOT NULL,
                    delivery_id uuid,
                    since timestamptz,
                    status_code integer NOT NULL,
                    result varchar(256) NOT NULL);
                CREATE INDEX ix_webhook_operator_audit_created ON webhook_operator_audit (created_at DESC, id DESC);
                CREATE INDEX ix_webhook_operator_audit_operator ON webhook_operator_audit (operator, created_at DESC);
                CREATE INDEX ix_webhook_operator_audit_user ON webhook_operator_audit (user_id, created_at DESC);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("DROP TABLE webhook_operator_audit;");
    }
}
