using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Security;

/// <summary>
/// Properly formed, signed tokens that must still be refused: each differs from a token the API
/// accepts (the control case) in exactly one respect, answers 401 and changes nothing.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class TokenValidationTests
{
    private const string Body = """{"url":"https://hooks.example.com/t","event_types":["task.created"]}""";

    /// <summary>What a token says and how it is signed; the defaults make a token the API accepts.</summary>
    public sealed record Spec(
        string Issuer = "notely",
        string Audience = "webhook-dispatcher",
        TimeSpan? NotBefore = null,
        TimeSpan? Expires = null,
        string Key = TestTokens.SigningKey,
        bool WithExpiry = true);

    private static string Signed(Spec spec, string userId, SigningCredentials? credentials = null)
    {
        var now = DateTime.UtcNow;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = spec.Issuer,
            Audience = spec.Audience,
            Claims = new Dictionary<string, object> { ["sub"] = userId },
            IssuedAt = now + (spec.NotBefore ?? TimeSpan.FromMinutes(-1)),
            NotBefore = now + (spec.NotBefore ?? TimeSpan.FromMinutes(-1)),
            Expires = spec.WithExpiry ? now + (spec.Expires ?? TimeSpan.FromHours(1)) : null,
            SigningCredentials = credentials ??
                                 new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(spec.Key)), SecurityAlgorithms.HmacSha256),
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = spec.WithExpiry }.CreateToken(descriptor);
    }

    private static string Base64Url(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));

    /// <summary>An unsigned token (<c>alg: none</c>, RFC 7519 §6) with otherwise valid claims.</summary>
    private static string Unsigned(string userId, string signature = "")
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var payload = new JsonObject
        {
            ["iss"] = "notely", ["aud"] = "webhook-dispatcher", ["sub"] = userId, ["iat"] = now - 60, ["nbf"] = now - 60, ["exp"] = now + 3600,
        };
        return $"{Base64Url("""{"alg":"none","typ":"JWT"}""")}.{Base64Url(payload.ToJsonString())}.{signature}";
    }

    private static IEnumerable<TestCaseData> RefusedTokens()
    {
        TestCaseData Case(string name, Func<string, string> token) => new TestCaseData(token).SetName(name);

        yield return Case("An expired token is 401", u => Signed(new Spec(NotBefore: TimeSpan.FromHours(-2), Expires: TimeSpan.FromHours(-1)), u));
        yield return Case("A token expired 2 minutes ago, beyond the 30 s clock skew, is 401",
            u => Signed(new Spec(NotBefore: TimeSpan.FromHours(-1), Expires: TimeSpan.FromMinutes(-2)), u));
        yield return Case("A token not valid for another 5 minutes is 401",
            u => Signed(new Spec(NotBefore: TimeSpan.FromMinutes(5), Expires: TimeSpan.FromHours(1)), u));
        yield return Case("A token without an expiry is 401", u => Signed(new Spec(WithExpiry: false), u));
        yield return Case("A token from another issuer is 401", u => Signed(new Spec(Issuer: "someone-else"), u));
        yield return Case("A token for another audience is 401", u => Signed(new Spec(Audience: "billing-service"), u));
        yield return Case("A token signed with another key is 401",
            u => Signed(new Spec(Key: "another-signing-key-0123456789-0123456789-abcdef"), u));
        yield return Case("A token signed with an RSA key the service does not know is 401",
            u => Signed(new Spec(), u, new SigningCredentials(new RsaSecurityKey(RSA.Create(2048)), SecurityAlgorithms.RsaSha256)));
        yield return Case("An unsigned token (alg none) is 401", u => Unsigned(u));
        yield return Case("An alg-none token carrying a valid token's signature is 401",
            u => Unsigned(u, Signed(new Spec(), u).Split('.')[2]));
        yield return Case("A valid token with its payload swapped is 401", u =>
        {
            var parts = Signed(new Spec(), "someone-else").Split('.');
            return $"{parts[0]}.{Signed(new Spec(), u).Split('.')[1]}.{parts[2]}";
        });
    }

    [TestCaseSource(nameof(RefusedTokens))]
    public async Task A_refused_token_answers_401_and_changes_nothing(Func<string, string> token)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token(user));

        var create = await client.PostJsonAsync("/api/webhooks", Body);
        var list = await client.GetAsync("/api/webhooks");

        Assert.Multiple(async () =>
        {
            Assert.That(create.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(list.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(create.Headers.WwwAuthenticate.Select(h => h.Scheme), Is.EqualTo(new[] { "Bearer" }));
            Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.Zero);
        });
    }

    private static IEnumerable<TestCaseData> AcceptedTokens()
    {
        yield return new TestCaseData(new Spec()).SetName("A token built like the refused ones but valid is accepted (control)");
        yield return new TestCaseData(new Spec(NotBefore: TimeSpan.FromHours(-1), Expires: TimeSpan.FromSeconds(-10)))
            .SetName("A token expired 10 s ago is still inside the 30 s clock skew");
    }

    [TestCaseSource(nameof(AcceptedTokens))]
    public async Task An_accepted_token_creates_a_subscription_for_its_subject(Spec spec)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Signed(spec, user));

        var create = await client.PostJsonAsync("/api/webhooks", Body);

        Assert.That(create.StatusCode, Is.EqualTo(HttpStatusCode.Created), await create.Content.ReadAsStringAsync());
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.EqualTo(1));
    }
}
