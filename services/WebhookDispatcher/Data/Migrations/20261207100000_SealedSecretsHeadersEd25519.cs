using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <summary>
    /// Subscription options beside the body, and room for sealed secrets: <c>headers</c> (custom
    /// headers, credential values sealed), <c>signature_scheme</c> (<c>hmac</c> for every existing
    /// row), <c>signing_key</c> and <c>previous_signing_key</c> (Ed25519, sealed), and the secret
    /// columns widened to 512 characters for their sealed form. Existing plain-text secrets stay as
    /// they are here and keep signing; the service seals them when it starts
    /// (<c>Security/SealingStartup.cs</c>), as no main key is known to SQL. The snapshot carries the
    /// model; this migration no target model.
    /// </summary>
    [DbContext(typeof(WebhookDbContext))]
    [Migration("20261207100000_SealedSecretsHeadersEd25519")]
    public partial class SealedSecretsHeadersEd25519 : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE webhook_subscriptions
                    ALTER COLUMN secret TYPE character varying(512),
                    ALTER COLUMN previous_secret TYPE character varying(512),
                    ADD COLUMN headers json, -- json, not jsonb: the headers keep the order their owner gave
                    ADD COLUMN signature_scheme character varying(16) NOT NULL DEFAULT 'hmac',
                    ADD COLUMN signing_key character varying(512),
                    ADD COLUMN previous_signing_key character varying(512);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) =>
            migrationBuilder.Sql("""
                ALTER TABLE webhook_subscriptions
                    DROP COLUMN headers,
                    DROP COLUMN signature_scheme,
                    DROP COLUMN signing_key,
                    DROP COLUMN previous_signing_key;
                """);
    }
}
