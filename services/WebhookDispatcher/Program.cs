using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Observability;

var builder = WebApplication.CreateBuilder(args);
builder.AddObservability();
builder.AddData();
builder.AddDeliveries();
builder.AddMessaging();
builder.Services.AddSingleton(TimeProvider.System);

var app = builder.Build();

if (args.Contains("migrate"))
{
    await app.Services.MigrateDatabaseAsync();
    return;
}

app.MapGet("/health", () => TypedResults.Ok(new { status = "ok" })).ExcludeFromDescription();
app.Run();

/// <summary>The service's entry point; public so integration tests can host it with WebApplicationFactory.</summary>
public partial class Program;
