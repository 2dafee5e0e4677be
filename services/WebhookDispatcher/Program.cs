using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Observability;
using WebhookDispatcher.Portal;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

// Everything from reading the settings to running is inside the try: a setting the service cannot
// start with (out of range, not of its type, a malformed connection string) stops it with the reason
// alone and exit code 1, wherever it is first read.
try
{
    var builder = WebApplication.CreateBuilder(args);
    if (args.FirstOrDefault() == TopologyCommand.Name) builder.Configuration[MessagingOptions.DeployTopologyOnlyKey] = "true";
    builder.AddObservability();
    builder.AddHealth();
    builder.AddData();
    builder.AddSealing();
    builder.AddDeliveries();
    builder.AddMessaging();
    builder.AddAuth();
    builder.AddSubscriptionsApi();
    builder.AddPortal();
    builder.Services.AddSingleton(TimeProvider.System);

    var app = builder.Build();

    switch (args.FirstOrDefault())
    {
        case "migrate": // apply migrations and exit (production deploys)
            try
            {
                await app.Services.MigrateDatabaseAsync();
            }
            catch (Exception ex) when (ex.GetBaseException() is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
            {
                // The database cannot be reached or refused a statement: the reason alone, as topology does.
                var database = new Npgsql.NpgsqlConnectionStringBuilder(app.Configuration.GetConnectionString("Postgres"));
                Console.Error.WriteLine($"migrate: could not migrate PostgreSQL at {database.Host}:{database.Port} (database {database.Database}): " +
                                        ex.GetBaseException().Message);
                Environment.ExitCode = 1;
            }
            return;
        case TopologyCommand.Name: // declare the broker's exchanges, queues and bindings and exit (production deploys)
            Environment.ExitCode = await app.Services.DeployTopologyAsync(Console.Out, Console.Error);
            return;
        case "token": // print a development token: token <user-id> [hours] [scope]
            var userId = args.ElementAtOrDefault(1) ?? "dev-user";
            var hours = 24.0;
            var scope = args.ElementAtOrDefault(3);
            if (!AuthExtensions.IsValidUserId(userId) || args.Length > 4
                || (args.Length > 2 && !(double.TryParse(args[2], System.Globalization.CultureInfo.InvariantCulture, out hours) && hours is > 0 and <= 24 * 365))
                // OAuth scope tokens (RFC 6749 section 3.3), separated by single spaces.
                || (scope is not null && !System.Text.RegularExpressions.Regex.IsMatch(scope, @"^[\x21\x23-\x5B\x5D-\x7E]{1,128}( [\x21\x23-\x5B\x5D-\x7E]{1,128})*$")))
            {
                Console.Error.WriteLine("usage: token <user-id> [hours, more than 0, at most 8760; default 24] [scope, e.g. webhooks:operator or webhooks:portal-links]");
                Environment.ExitCode = 2;
                return;
            }
            Console.WriteLine(AuthExtensions.CreateDevelopmentToken(app.Services.GetRequiredService<IOptions<AuthOptions>>().Value,
                userId, TimeSpan.FromHours(hours), scope));
            return;
    }

    app.UseExceptionHandler();
    app.UseStatusCodePages();
    // Before authentication: a portal session's bearer is looked up in the database there, and that
    // lookup has the endpoint's deadline too (Subscriptions/DatabaseDeadline.cs). Routing runs first.
    app.UseRequestTimeouts();
    app.UseRequestCancellationOffThePool();
    app.UseAuthentication();
    app.UsePortalReadOnly();
    app.UseAuthorization();
    app.UseRateLimiter();
    app.MapOpenApi();
    app.MapHealthEndpoints();
    app.MapSubscriptionsApi();
    app.MapPortal();
    if (!app.Environment.IsDevelopment() && app.Services.GetRequiredService<IOptions<DeliveryOptions>>().Value.AllowPrivateNetworks)
        app.Logger.LogWarning("Delivery:AllowPrivateNetworks is on outside Development ({Environment}): subscriber URLs may reach loopback, " +
                              "private, link-local and cloud metadata addresses (no SSRF guard). Turn it off unless every tenant is trusted.",
            app.Environment.EnvironmentName);
    app.Run();
}
catch (Exception ex) when (StartupRefusal(ex) is { } reason
                           // Only as its own process: a host in tests (WebApplicationFactory) sees the exception.
                           && System.Reflection.Assembly.GetEntryAssembly() == typeof(Program).Assembly)
{
    Console.Error.WriteLine($"The service cannot start: {reason}");
    Environment.ExitCode = 1;
}

// Why the service cannot start, when ex (or what it wraps) is about its settings or stored state; null otherwise.
static string? StartupRefusal(Exception ex)
{
    for (Exception? e = ex; e is not null; e = e.InnerException)
    {
        if (e is OptionsValidationException or StartupRefusedException) return e.Message;
        // A setting that does not parse as its type (a number given as "abc"): the configuration
        // binder's own exception, told by where it was thrown, not by its wording.
        if (e is InvalidOperationException && e.Source == typeof(ConfigurationBinder).Assembly.GetName().Name) return e.Message;
        // A PostgreSQL connection string Npgsql cannot read ("Couldn't set hst").
        if (e is ArgumentException && e.Source == typeof(Npgsql.NpgsqlConnection).Assembly.GetName().Name)
            return $"ConnectionStrings:Postgres: {e.Message}";
        // A log level that is none (Logging:LogLevel:Default "Loud").
        if (e is InvalidOperationException && e.Source?.StartsWith("Microsoft.Extensions.Logging", StringComparison.Ordinal) == true)
            return $"Logging: {e.Message}";
    }
    return null;
}

/// <summary>The service's entry point; public so integration tests can host it with WebApplicationFactory.</summary>
public partial class Program;
