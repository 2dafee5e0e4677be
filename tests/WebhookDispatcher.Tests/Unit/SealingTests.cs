using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Security;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>The sealer (AES-GCM under a main key, key id in the value) and the rules of custom header names and masks.</summary>
public sealed class SealingTests
{
    private static readonly string KeyA = Convert.ToBase64String(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
    private static readonly string KeyB = Convert.ToBase64String(Enumerable.Range(100, 32).Select(i => (byte)i).ToArray());

    private static SecretSealer Sealer(string main, params string[] old) =>
        new(Options.Create(new SealingOptions { MainKey = main, OldMainKeys = [.. old] }));

    [Test]
    public void A_sealed_value_opens_to_the_same_text_and_never_repeats()
    {
        var sealer = Sealer(KeyA);
        var secret = WebhookSigner.NewSecret();

        var once = sealer.Seal(secret);
        var twice = sealer.Seal(secret);

        Assert.Multiple(() =>
        {
            Assert.That(once, Does.StartWith($"sealed:v1:{sealer.CurrentKeyId}:"));
            Assert.That(once, Does.Not.Contain(secret[6..]));
            Assert.That(twice, Is.Not.EqualTo(once), "a fresh nonce each time");
            Assert.That(Sealer(KeyA).Unseal(once), Is.EqualTo(secret), "another process with the key opens it (no cache)");
            Assert.That(sealer.Unseal(secret), Is.EqualTo(secret), "plain text from before sealing passes through");
        });
    }

    [Test]
    public void An_old_key_opens_what_it_sealed_and_a_missing_or_wrong_key_refuses()
    {
        var sealedByA = Sealer(KeyA).Seal("whsec_x");
        var tampered = sealedByA[..^6] + (sealedByA[^6] == 'A' ? 'B' : 'A') + sealedByA[^5..];

        Assert.Multiple(() =>
        {
            Assert.That(Sealer(KeyB, KeyA).Unseal(sealedByA), Is.EqualTo("whsec_x"));
            Assert.That(Sealer(KeyB, KeyA).NeedsSealing(sealedByA), Is.True, "sealed again with the current key at start");
            Assert.That(Sealer(KeyA).NeedsSealing(sealedByA), Is.False);
            Assert.That(() => Sealer(KeyB).Unseal(sealedByA), Throws.InstanceOf<CryptographicException>().With.Message.Contains(SecretSealer.KeyIdOf(sealedByA)));
            Assert.That(() => Sealer(KeyA).Unseal(tampered), Throws.InstanceOf<CryptographicException>());
        });
    }

    [TestCase(null, "required")]
    [TestCase("", "required")]
    [TestCase("c2hvcnQ=", "32 bytes")]
    [TestCase("not base64!", "32 bytes")]
    public void A_missing_or_malformed_main_key_is_refused_by_validation(string? key, string says)
    {
        var errors = new SealingOptions { MainKey = key }.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(new object())).ToList();

        Assert.That(errors.Select(e => e.ErrorMessage), Has.Some.Contains("Sealing:MainKey").And.Some.Contains(says));
    }

    [TestCase("Authorization", true)]
    [TestCase("X-Api-Key", true)]
    [TestCase("X-Auth-Token", true)]
    [TestCase("Cookie", true)]
    [TestCase("X-Client-Secret", true)]
    [TestCase("X-Tenant", false)]
    [TestCase("Accept-Language", false)]
    public void Credential_header_names_are_recognised(string name, bool credential) =>
        Assert.That(SubscriptionHeaders.IsCredential(name), Is.EqualTo(credential));

    [TestCase("webhook-id")]
    [TestCase("X-WEBHOOK-SIGNATURE")]
    [TestCase("host")]
    [TestCase("Transfer-Encoding")]
    [TestCase("X-Bad:Name")]
    [TestCase("X-Bad\nName")]
    [TestCase("")]
    public void Refused_names_say_why(string name) => Assert.That(SubscriptionHeaders.NameProblem(name), Is.Not.Null);

    [Test]
    public void Masks_show_four_characters_of_long_credentials_only()
    {
        Assert.Multiple(() =>
        {
            Assert.That(SubscriptionHeaders.Shown("Authorization", "Bearer abcdefghijklmnop"), Is.EqualTo("Bear…(redacted)"));
            Assert.That(SubscriptionHeaders.Shown("X-Api-Key", "short-key"), Is.EqualTo("…(redacted)"));
            Assert.That(SubscriptionHeaders.Shown("X-Tenant", "acme"), Is.EqualTo("acme"));
        });
    }
}
