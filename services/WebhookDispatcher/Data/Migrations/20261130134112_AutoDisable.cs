using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace WebhookDispatcher.Data.Migrations
{
    /// <inheritdoc />
    public partial class AutoDisable : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "disabled_at",
                table: "webhook_subscriptions",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<bool>(
                name: "disabled_notice_pending",
                table: "webhook_subscriptions",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<string>(
                name: "disabled_reason",
                table: "webhook_subscriptions",
                type: "character varying(32)",
                maxLength: 32,
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "failing_since",
                table: "webhook_subscriptions",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "failures_since_success",
                table: "webhook_subscriptions",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.CreateIndex(
                name: "ix_webhook_subscriptions_disabled_notice",
                table: "webhook_subscriptions",
                column: "disabled_notice_pending",
                filter: "disabled_notice_pending");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_webhook_subscriptions_disabled_notice",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "disabled_at",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "disabled_notice_pending",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "disabled_reason",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "failing_since",
                table: "webhook_subscriptions");

            migrationBuilder.DropColumn(
                name: "failures_since_success",
                table: "webhook_subscriptions");
        }
    }
}
