using System.Net.Http.Headers;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>Bearer tokens for the API tests, signed with the test key the dispatcher is configured with.</summary>
public static class TestTokens
{
    public const string SigningKey = "test-signing-key-0123456789-0123456789-abcdef";

    /// <summary>The main key (Sealing:MainKey) every dispatcher of a test run seals secrets with: they share one database.</summary>
    public const string SealingKey = "dGVzdC1vbmx5LW1haW4ta2V5LXNlYWxpbmctMzItYnk=";

    public static string For(string userId) => AuthExtensions.CreateDevelopmentToken(
        new AuthOptions { Issuer = "notely", Audience = "webhook-dispatcher", SigningKey = SigningKey }, userId, TimeSpan.FromHours(1));

    /// <summary>An HttpClient to the in-process API, authenticated as <paramref name="userId"/> (none when null).</summary>
    public static HttpClient Client(string? userId)
    {
        var client = Dispatcher.CreateClient();
        if (userId is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", For(userId));
        return client;
    }
}
