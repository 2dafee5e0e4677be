using System.Net;
using System.Text.Json.Nodes;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>The health probes while the servers are up.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class HealthTests
{
    [Test]
    public async Task Ready_answers_200_naming_the_database_migrations_broker_and_bus_checks_all_healthy()
    {
        using var client = TestTokens.Client(null);

        var (status, checks) = await Probe.ReadyAsync(client);
        var live = await client.GetAsync("/health/live");
        var legacy = await client.GetAsync("/health");

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(checks, Is.EquivalentTo(new Dictionary<string, string>
            {
                ["postgres"] = "Healthy", ["migrations"] = "Healthy", ["rabbitmq"] = "Healthy", ["masstransit-bus"] = "Healthy",
            }));
            Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((await live.JsonAsync())["checks"]!.AsObject(), Is.Empty, "liveness checks no dependency");
            Assert.That(legacy.StatusCode, Is.EqualTo(HttpStatusCode.OK), "/health still answers for scripts that wait on it");
        });
    }

    [Test]
    public async Task Ready_answers_503_naming_the_migrations_while_one_is_pending_and_200_once_they_are_applied()
    {
        await using var database = await ScratchDatabase.CreateAsync("unmigrated", migrate: false);
        await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["Dispatcher:Workers"] = "false",
        });
        using var client = api.Client(null);

        var (before, beforeChecks) = await Probe.ReadyAsync(client);
        var live = await client.GetAsync("/health/live");
        await database.MigrateAsync();
        var (after, afterChecks) = await Probe.ReadyAsync(client);

        Assert.Multiple(() =>
        {
            Assert.That(before, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(beforeChecks["migrations"], Is.EqualTo("Unhealthy"));
            Assert.That(beforeChecks["postgres"], Is.EqualTo("Healthy"), "the database itself answers");
            Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(after, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(afterChecks["migrations"], Is.EqualTo("Healthy"));
        });
    }
}

/// <summary>Reads the readiness probe.</summary>
public static class Probe
{
    /// <summary>The status of <c>/health/ready</c> and each check's status by name.</summary>
    public static async Task<(HttpStatusCode Status, Dictionary<string, string> Checks)> ReadyAsync(HttpClient client)
    {
        var response = await client.GetAsync("/health/ready");
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        return (response.StatusCode, body["checks"]!.AsObject().ToDictionary(c => c.Key, c => c.Value!.GetValue<string>()));
    }

    /// <summary>
    /// Probes <c>/health/ready</c> every 250 ms until it answers <paramref name="wanted"/>; the answer
    /// and the time from the call to its arrival, or the last answer when <paramref name="timeout"/> passes.
    /// </summary>
    public static async Task<(HttpStatusCode Status, Dictionary<string, string> Checks, TimeSpan After)> ReadyUntilAsync(
        HttpClient client, HttpStatusCode wanted, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var (status, checks) = await ReadyAsync(client);
            if (status == wanted || clock.Elapsed > timeout) return (status, checks, clock.Elapsed);
            await Task.Delay(250);
        }
    }
}
