using System.Net;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Security;

/// <summary>
/// The <c>Auth</c> settings are checked when the host starts: a bad combination stops it with a
/// message naming the setting, instead of a host that starts and then fails every request.
/// Each instance runs with production settings, API only, on its own virtual host.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class AuthStartupTests
{
    private static Dictionary<string, string?> Settings(string? authority, string? signingKey, string? issuer = "notely", string? audience = "webhook-dispatcher") => new()
    {
        ["Dispatcher:Workers"] = "false",
        // Empty is how a setting is cleared over appsettings.json, and how an unset environment variable arrives.
        ["Auth:Authority"] = authority ?? "",
        ["Auth:SigningKey"] = signingKey ?? "",
        ["Auth:Issuer"] = issuer ?? "",
        ["Auth:Audience"] = audience ?? "",
    };

    private const string Key = TestTokens.SigningKey;

    private static IEnumerable<TestCaseData> BadSettings()
    {
        yield return new TestCaseData(Settings(null, null), new[] { "Auth:Authority", "Auth:SigningKey" })
            .SetName("Neither an authority nor a signing key stops the host");
        yield return new TestCaseData(Settings("https://login.example.com/", Key), new[] { "Auth:Authority", "Auth:SigningKey" })
            .SetName("Both an authority and a signing key stop the host");
        yield return new TestCaseData(Settings(null, new string('k', 31)), new[] { "Auth:SigningKey", "32 bytes" })
            .SetName("A signing key shorter than 32 bytes stops the host");
        yield return new TestCaseData(Settings(null, Key, issuer: null), new[] { "Auth:Issuer" })
            .SetName("An empty issuer stops the host");
        yield return new TestCaseData(Settings(null, Key, audience: null), new[] { "Auth:Audience" })
            .SetName("An empty audience stops the host");
        yield return new TestCaseData(Settings("http://login.example.com/", null), new[] { "Auth:Authority", "https" })
            .SetName("An authority over plain http stops the host");
        yield return new TestCaseData(Settings("login.example.com", null), new[] { "Auth:Authority", "https" })
            .SetName("An authority that is not an absolute URL stops the host");
    }

    [TestCaseSource(nameof(BadSettings))]
    public async Task Bad_auth_settings_stop_the_host_with_a_message_naming_the_setting(Dictionary<string, string?> settings, string[] named)
    {
        Exception? failure = null;
        try
        {
            await using var dispatcher = await IsolatedDispatcher.StartAsync(settings);
        }
        catch (Exception ex)
        {
            failure = ex;
        }

        Assert.That(failure, Is.Not.Null, "the host started");
        var messages = string.Join(" | ", Flatten(failure!).Select(e => e.Message));
        foreach (var name in named)
            Assert.That(messages, Does.Contain(name));
    }

    [TestCase("https://login.example.com/", null, TestName = "A host with only an https authority (production) starts and refuses anonymous calls")]
    [TestCase(null, Key, TestName = "A host with only a signing key (development) starts and refuses anonymous calls")]
    public async Task Good_auth_settings_start_the_host(string? authority, string? signingKey)
    {
        await using var dispatcher = await IsolatedDispatcher.StartAsync(Settings(authority, signingKey));
        using var client = dispatcher.Client(null);

        Assert.That((await client.GetAsync("/health")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await client.GetAsync("/api/webhooks")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    private static IEnumerable<Exception> Flatten(Exception e)
    {
        yield return e;
        var inner = e is AggregateException aggregate ? aggregate.InnerExceptions : e.InnerException is { } one ? [one] : [];
        foreach (var child in inner.SelectMany(Flatten))
            yield return child;
    }
}
