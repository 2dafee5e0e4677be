using System.Text.Json;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>The URL rules that depend on settings the shared test dispatcher cannot have at once.</summary>
public sealed class SubscriptionRequestTests
{
    private static string[] UrlErrors(string url, bool httpsOnly, bool allowPrivateNetworks)
    {
        using var body = JsonDocument.Parse(JsonSerializer.Serialize(new { url, event_types = new[] { "email.received" } }));
        var (_, errors) = SubscriptionRequest.Read(body.RootElement, isCreate: true, httpsOnly, allowPrivateNetworks);
        return errors.GetValueOrDefault("url", []);
    }

    [TestCase("http://127.0.0.1:8080/x")]
    [TestCase("http://localhost/x")]
    [TestCase("https://10.0.0.5/x")]
    [TestCase("https://169.254.169.254/latest/meta-data")]
    [TestCase("https://[::1]/x")]
    [TestCase("https://[fd00::1]/x")]
    [TestCase("http://127.0.0.1.:5391/x")]
    [TestCase("https://10.0.0.5./x")]
    [TestCase("http://127\u30020\u30020\u30021/x")]
    [TestCase("http://\u2460\u2461\u2466.0.0.1/x")]
    public void Private_addresses_are_rejected_unless_allowed(string url)
    {
        Assert.That(UrlErrors(url, httpsOnly: false, allowPrivateNetworks: false), Has.Length.EqualTo(1));
        Assert.That(UrlErrors(url, httpsOnly: false, allowPrivateNetworks: true), Is.Empty);
    }

    [Test]
    public void Http_is_rejected_when_https_is_required()
    {
        Assert.That(UrlErrors("http://hooks.example.com/x", httpsOnly: true, allowPrivateNetworks: false), Has.Length.EqualTo(1));
        Assert.That(UrlErrors("https://hooks.example.com/x", httpsOnly: true, allowPrivateNetworks: false), Is.Empty);
    }
}
