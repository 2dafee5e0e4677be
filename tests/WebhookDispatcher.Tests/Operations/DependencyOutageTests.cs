using System.Net;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Operations;

/// <summary>
/// The readiness probe while PostgreSQL or RabbitMQ is taken away and brought back, with the
/// shared dispatcher running throughout (no restart). Not parallel: every other test would lose
/// the server too. The server is started again whatever happens.
/// </summary>
[NonParallelizable]
public sealed class DependencyOutageTests
{
    /// <summary>The promise: unready within this long of losing a dependency.</summary>
    private static readonly TimeSpan Promise = TimeSpan.FromSeconds(5);

    [Test]
    public async Task Ready_goes_503_within_5_s_of_PostgreSQL_stopping_and_back_to_200_when_it_returns_without_a_restart()
    {
        using var client = TestTokens.Client(null);
        using var api = TestTokens.Client(Events.NewUser());
        var services = Dispatcher.Services;
        Assert.That((await Probe.ReadyAsync(client)).Status, Is.EqualTo(HttpStatusCode.OK), "ready before the outage");
        // Several pooled connections, all of which the restart will break.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => api.GetAsync("/api/webhooks")));

        (HttpStatusCode Status, Dictionary<string, string> Checks, TimeSpan After) down;
        HttpStatusCode liveDuringOutage;
        try
        {
            await Servers.StopPostgresAsync();
            down = await Probe.ReadyUntilAsync(client, HttpStatusCode.ServiceUnavailable, Promise + Promise);
            liveDuringOutage = (await client.GetAsync("/health/live")).StatusCode;
        }
        finally
        {
            await Servers.StartPostgresAsync();
        }
        var back = await Probe.ReadyUntilAsync(client, HttpStatusCode.OK, TimeSpan.FromSeconds(30));
        // The first API calls after the restart meet the dead pooled connections: none may fail.
        var afterRestart = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++) afterRestart.Add((await api.GetAsync("/api/webhooks")).StatusCode);

        Assert.Multiple(() =>
        {
            Assert.That(afterRestart, Has.All.EqualTo(HttpStatusCode.OK), "API calls right after the restart");
            Assert.That(down.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(down.After, Is.LessThanOrEqualTo(Promise));
            Assert.That(down.Checks["postgres"], Is.EqualTo("Unhealthy"));
            Assert.That(down.Checks["rabbitmq"], Is.EqualTo("Healthy"), "only the database is down");
            Assert.That(liveDuringOutage, Is.EqualTo(HttpStatusCode.OK), "liveness does not depend on the database");
            Assert.That(back.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(back.Checks.Values, Has.All.EqualTo("Healthy"));
            Assert.That(Dispatcher.Services, Is.SameAs(services), "the same service instance recovered");
        });
    }

    [Test]
    public async Task Ready_goes_503_within_5_s_of_RabbitMQ_stopping_and_back_to_200_when_it_returns_without_a_restart()
    {
        using var client = TestTokens.Client(null);
        var services = Dispatcher.Services;
        Assert.That((await Probe.ReadyAsync(client)).Status, Is.EqualTo(HttpStatusCode.OK), "ready before the outage");

        (HttpStatusCode Status, Dictionary<string, string> Checks, TimeSpan After) down;
        HttpStatusCode liveDuringOutage;
        try
        {
            await Servers.StopBrokerAsync();
            down = await Probe.ReadyUntilAsync(client, HttpStatusCode.ServiceUnavailable, Promise + Promise);
            liveDuringOutage = (await client.GetAsync("/health/live")).StatusCode;
        }
        finally
        {
            await Servers.StartBrokerAsync();
        }
        var back = await Probe.ReadyUntilAsync(client, HttpStatusCode.OK, TimeSpan.FromSeconds(60));
        // The tests after this one need every bus of the run connected again, not only this one.
        var busesBack = await Dispatcher.EventuallyAsync(() => Task.FromResult(AllBusesHealthy()), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(down.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(down.After, Is.LessThanOrEqualTo(Promise));
            Assert.That(down.Checks["rabbitmq"], Is.EqualTo("Unhealthy"));
            Assert.That(down.Checks["postgres"], Is.EqualTo("Healthy"), "only the broker is down");
            Assert.That(liveDuringOutage, Is.EqualTo(HttpStatusCode.OK), "liveness does not depend on the broker");
            Assert.That(back.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(back.Checks.Values, Has.All.EqualTo("Healthy"));
            Assert.That(busesBack, Is.True, "every dispatcher of the run reconnected its bus");
            Assert.That(Dispatcher.Services, Is.SameAs(services), "the same service instance recovered");
        });
    }

    private static bool AllBusesHealthy() =>
        new[] { Dispatcher.Services }.Concat(IsolatedDispatcher.Running.Select(i => i.Services))
            .All(s => s.GetRequiredService<IBusControl>().CheckHealth().Status == BusHealthStatus.Healthy);
}
