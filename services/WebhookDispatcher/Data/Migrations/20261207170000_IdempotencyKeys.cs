using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// The <c>Idempotency-Key</c>s of subscription creates and secret rotations (<see cref="Subscriptions.IdempotencyKeys"/>):
    /// per user and key, the fingerprint of the request, the subscription it made or rotated and
    /// the SHA-256 of the secret it made (so a repeat tells whether it is still the current one), kept
    /// <see cref="Subscriptions.IdempotencyKeys.Lifetime"/>. The model is unchanged (raw SQL), so
    /// this migration carries no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207170000_IdempotencyKeys")]
    public partial class IdempotencyKeys : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                CREATE TABLE webhook_idempotency_keys (
                    user_id character varying(256) NOT NULL,
                    idempotency_key character varying(255) NOT NULL,
                    request_hash bytea NOT NULL,
                    subscription_id uuid NOT NULL,
                    result_hash bytea,
                    created_at timestamp with time zone NOT NULL,
                    CONSTRAINT pk_webhook_idempotency_keys PRIMARY KEY (user_id, idempotency_key));
                CREATE INDEX ix_webhook_idempotency_keys_created_at ON webhook_idempotency_keys (created_at);
                """);

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("DROP TABLE webhook_idempotency_keys;");
    }
}
