using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <inheritdoc />
    public partial class ReconcilerState : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // One row the reconcilers share: when a pass last ran, and since when passes have run
            // without a gap. A gap means the database (or every dispatcher) was away; lost attempts
            // are given back only once passes have run again for a while, so a process that kept an
            // answer in memory through the outage records it first (RecoveryStore.ReclaimOverdueAsync).
            migrationBuilder.Sql("""
                CREATE TABLE webhook_reconciler_state (
                    id smallint PRIMARY KEY CHECK (id = 1),
                    last_pass_at timestamptz NOT NULL,
                    up_since timestamptz NOT NULL);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("DROP TABLE webhook_reconciler_state");
    }
}
