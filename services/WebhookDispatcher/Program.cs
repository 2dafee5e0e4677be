using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Observability;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

var builder = WebApplication.CreateBuilder(args);
builder.AddObservability();
builder.AddData();
builder.AddDeliveries();
builder.AddMessaging();
builder.AddAuth();
builder.AddSubscriptionsApi();
builder.Services.AddSingleton(TimeProvider.System);

var app = builder.Build();

switch (args.FirstOrDefault())
{
    case "migrate": // apply migrations and exit (production deploys)
        await app.Services.MigrateDatabaseAsync();
        return;
    case "token": // print a development token: token <user-id> [hours]
        var hours = args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 24;
        Console.WriteLine(AuthExtensions.CreateDevelopmentToken(app.Services.GetRequiredService<IOptions<AuthOptions>>().Value,
            args.ElementAtOrDefault(1) ?? "dev-user", TimeSpan.FromHours(hours)));
        return;
}

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseAuthentication();
app.UseAuthorization();
app.MapOpenApi();
app.MapGet("/health", () => TypedResults.Ok(new { status = "ok" })).ExcludeFromDescription();
app.MapSubscriptionsApi();
app.Run();

/// <summary>The service's entry point; public so integration tests can host it with WebApplicationFactory.</summary>
public partial class Program;
