using System.Net;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Security;

/// <summary>
/// The <c>Auth</c> settings are checked when the service starts: a bad combination stops the
/// process with a message naming the setting, instead of a service that starts and then fails
/// every request. Each case runs the service as its own process with production settings, API only.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class AuthStartupTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private const string Key = TestTokens.SigningKey;

    /// <summary>
    /// Settings as environment variables; empty is how a deployment clears a value of
    /// appsettings.json (Issuer and Audience have defaults there).
    /// </summary>
    private static Dictionary<string, string> Settings(string authority, string signingKey, string issuer = "notely",
        string audience = "webhook-dispatcher") => new()
    {
        ["Dispatcher:Workers"] = "false",
        ["Auth:Authority"] = authority,
        ["Auth:SigningKey"] = signingKey,
        ["Auth:Issuer"] = issuer,
        ["Auth:Audience"] = audience,
    };

    private static IEnumerable<TestCaseData> BadSettings()
    {
        yield return new TestCaseData(Settings("", ""), new[] { "Auth:Authority", "Auth:SigningKey" })
            .SetName("Neither an authority nor a signing key stops the service");
        yield return new TestCaseData(Settings("https://login.example.com/", Key), new[] { "Auth:Authority", "Auth:SigningKey" })
            .SetName("Both an authority and a signing key stop the service");
        yield return new TestCaseData(Settings("", new string('k', 31)), new[] { "Auth:SigningKey", "32 bytes" })
            .SetName("A signing key shorter than 32 bytes stops the service");
        yield return new TestCaseData(Settings("", Key, issuer: ""), new[] { "Auth:Issuer" })
            .SetName("An empty issuer stops the service");
        yield return new TestCaseData(Settings("", Key, audience: ""), new[] { "Auth:Audience" })
            .SetName("An empty audience stops the service");
        yield return new TestCaseData(Settings("http://login.example.com/", ""), new[] { "Auth:Authority", "https" })
            .SetName("An authority over plain http stops the service");
        yield return new TestCaseData(Settings("login.example.com", ""), new[] { "Auth:Authority", "https" })
            .SetName("An authority that is not an absolute URL stops the service");
    }

    [TestCaseSource(nameof(BadSettings))]
    public async Task Bad_auth_settings_stop_the_service_with_a_message_naming_the_setting(Dictionary<string, string> settings, string[] named)
    {
        await using var service = await ServiceProcess.StartAsync(settings);

        var exitCode = await service.WaitForExitAsync(Patience);

        Assert.That(exitCode, Is.Not.Null, $"the service is still running:\n{service.Output}");
        Assert.That(exitCode, Is.Not.Zero);
        foreach (var name in named)
            Assert.That(service.Output, Does.Contain(name));
    }

    [TestCase("https://login.example.com/", "", TestName = "A service with only an https authority (production) starts and refuses anonymous calls")]
    [TestCase("", Key, TestName = "A service with only a signing key (development) starts and refuses anonymous calls")]
    public async Task Good_auth_settings_start_the_service(string authority, string signingKey)
    {
        await using var service = await ServiceProcess.StartAsync(Settings(authority, signingKey));

        var address = await service.WaitUntilServingAsync(Patience);

        Assert.That(address, Is.Not.Null, service.Output);
        using var client = new HttpClient { BaseAddress = address };
        Assert.That((await client.GetAsync("/health")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await client.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }
}
