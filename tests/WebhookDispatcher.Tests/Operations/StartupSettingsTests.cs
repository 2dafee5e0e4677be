using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// A setting the service cannot use stops it at start with the reason alone: exit code 1 and a
/// message naming the setting, no stack trace. Each case runs the service as its own process.
/// (Settings that parse but are out of range: the options classes' validation, e.g. AuthStartupTests.)
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class StartupSettingsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [TestCase("Delivery:MaxInFlight", "abc", TestName = "A number given as letters stops the service with a message naming the setting")]
    [TestCase("Database:ApiRequestTimeoutSeconds", "1.5", TestName = "A fraction where a whole number is needed stops the service with a message naming the setting")]
    [TestCase("Delivery:ClaimAtInsert", "sometimes", TestName = "A switch given as a word other than true or false stops the service with a message naming the setting")]
    public async Task A_setting_that_does_not_parse_as_its_type_stops_the_service(string name, string value)
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            [name] = value,
        });

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Contain("The service cannot start").And.Contain($"'{name}'"));
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
    }

    [TestCase("Delivery:MaxEventBytes", "100", "MaxEventBytes", TestName = "A delivery setting out of its range stops the service with a message naming it")]
    [TestCase("Health:TimeoutSeconds", "abc", "Health:TimeoutSeconds", TestName = "A health setting that does not parse stops the service with a message naming it")]
    [TestCase("ConnectionStrings:RabbitMq", "not a uri", "ConnectionStrings:RabbitMq", TestName = "A broker connection string that is no amqp URI stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "Hst=x;;", "ConnectionStrings:Postgres", TestName = "A PostgreSQL connection string Npgsql cannot read stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "garbage", "ConnectionStrings:Postgres", TestName = "A PostgreSQL connection string that is no list of settings stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "Host=;Port=5432", "ConnectionStrings:Postgres", TestName = "A PostgreSQL connection string without a host stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "Host=127.0.0.1;Port=70000", "ConnectionStrings:Postgres", TestName = "A PostgreSQL port out of range stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "Host=127.0.0.1;Port=5432;Maximum Pool Size=0", "Maximum Pool Size", TestName = "A PostgreSQL pool of at most 0 connections stops the service with a message naming it")]
    [TestCase("ConnectionStrings:Postgres", "Host=127.0.0.1;Port=5432;Minimum Pool Size=20;Maximum Pool Size=10", "Min Pool Size", TestName = "A PostgreSQL pool whose minimum exceeds its maximum stops the service with a message naming it")]
    [TestCase("Health:TimeoutSeconds", "0", "Health:TimeoutSeconds", TestName = "A health timeout out of its range stops the service with a message naming it")]
    [TestCase("Logging:LogLevel:Default", "Loud", "Logging", TestName = "A log level that is none stops the service with a message naming the section")]
    public async Task A_setting_read_while_the_service_is_built_stops_it_with_the_reason_alone(string name, string value, string named)
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            [name] = value,
        });

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Contain("The service cannot start").And.Contain(named));
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
    }

    [TestCase("Sealing:OldMainKeys:abc", "Sealing:OldMainKeys:abc", TestName = "An old main key under an index that is no number stops the service with a message naming it")]
    [TestCase("Sealing:OldMainKeys", "Sealing:OldMainKeys", TestName = "An old main key given as the list itself stops the service with a message naming it")]
    [TestCase("Sealing:OldMainKeys:0:x", "Sealing:OldMainKeys:0:x", TestName = "An old main key given as a section stops the service with a message naming it")]
    public async Task An_old_main_key_the_list_would_read_otherwise_than_meant_stops_the_service(string name, string named)
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            [name] = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)),
        });

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Contain("The service cannot start").And.Contain(named).And.Contain("Sealing:OldMainKeys:0"));
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
    }

    [Test]
    public async Task Frame_ancestors_given_as_a_list_are_all_allowed_to_embed_the_portal()
    {
        // As a JSON array in appsettings binds, or Portal__FrameAncestors__0 … in the environment.
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Portal:FrameAncestors:0"] = "https://app.example.com",
            ["Portal:FrameAncestors:1"] = "https://*.example.org",
        });
        var address = await service.WaitUntilServingAsync(Patience);
        Assert.That(address, Is.Not.Null, service.Output);

        using var client = new HttpClient { BaseAddress = address };
        using var page = await client.GetAsync("/portal");

        Assert.That(page.Headers.GetValues("Content-Security-Policy").Single(),
            Does.Contain("frame-ancestors https://app.example.com https://*.example.org"));
        Assert.That(page.Headers.Contains("X-Frame-Options"), Is.False, "embedding is allowed");
    }

    [Test]
    public async Task A_frame_ancestors_list_entry_that_is_a_section_stops_the_service_with_a_message_naming_it()
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Portal:FrameAncestors:0:origin"] = "https://app.example.com",
        });

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Contain("The service cannot start").And.Contain("Portal:FrameAncestors:0"));
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"), "the reason alone, no stack trace");
    }

    [Test]
    public async Task A_worker_on_a_database_that_lacks_migrations_refuses_to_start()
    {
        await using var database = await ScratchDatabase.CreateAsync("unmigrated-worker", migrate: false);
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
        });

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.EqualTo(1), service.Output);
        Assert.That(service.Output, Does.Contain("The service cannot start: the database lacks").And.Contain("run `WebhookDispatcher migrate`"));
        Assert.That(service.Output, Does.Not.Contain("Unhandled exception"));
    }

    [Test]
    public async Task Private_networks_allowed_outside_Development_are_warned_about_at_start()
    {
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Auth:SigningKey"] = TestTokens.SigningKey,
            ["Dispatcher:Workers"] = "false",
            ["Delivery:AllowPrivateNetworks"] = "true",
        });

        Assert.That(await service.WaitUntilServingAsync(Patience), Is.Not.Null, service.Output);
        Assert.That(service.Output, Does.Contain("warn:").And.Contain("Delivery:AllowPrivateNetworks is on outside Development (Production)"));
    }
}
