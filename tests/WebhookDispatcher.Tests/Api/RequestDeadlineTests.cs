using System.Net;
using Microsoft.Extensions.DependencyInjection;
using WebhookDispatcher.Shaping;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// A request past its deadline (<c>Database:ApiRequestTimeoutSeconds</c>) answers 503 with
/// <c>Retry-After</c> and says that the request did not finish in time, not that the database did
/// not answer: what it waited for may have been something else, here a turn to render a template.
/// </summary>
public sealed class RequestDeadlineTests
{
    [Test]
    public async Task A_create_cut_off_while_waiting_for_a_render_turn_answers_503_without_blaming_the_database()
    {
        using var gate = new TemplateRenderGate(1, TimeProvider.System);
        await using var api = await IsolatedDispatcher.StartAsync(new Dictionary<string, string?>
        {
            ["Dispatcher:Workers"] = "false",
            ["Database:ApiRequestTimeoutSeconds"] = "1",
        }, sharedBroker: true, services: s => s.AddSingleton(gate));
        using var release = new ManualResetEventSlim();
        // Another user's rendering holds the only turn.
        var holder = Task.Run(() => gate.RunAsync("someone-else", () =>
        {
            release.Wait();
            return new RenderedBody([], "text/plain", null);
        }, CancellationToken.None));
        try
        {
            await Task.Delay(200);
            using var client = api.Client(Events.NewUser());

            using var response = await client.PostAsync("/api/webhooks", new StringContent(
                """{"url":"https://hooks.example.com/deadline","event_types":["email.received"],"template":{"builtin":"text"}}""",
                System.Text.Encoding.UTF8, "application/json"));

            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
            Assert.That(response.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(body, Does.Not.Contain("database did not answer").IgnoreCase.And.Not.Contain("Database unavailable"));
            Assert.That(body, Does.Contain("could not finish within 1 second"));
        }
        finally
        {
            release.Set();
            await holder;
        }
    }
}
