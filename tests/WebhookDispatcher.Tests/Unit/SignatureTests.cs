using System.Text;
using Notely.WebhookDemo;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Unit;

public sealed class SignatureTests
{
    [Test]
    public void Legacy_signature_matches_the_GitHub_documentation_vector()
    {
        var signature = WebhookSigner.LegacySignature("It's a Secret to Everybody", "Hello, World!"u8);

        Assert.That(signature, Is.EqualTo("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
    }

    [Test]
    public void Standard_signature_matches_the_Standard_Webhooks_reference_vector()
    {
        var signature = WebhookSigner.StandardSignature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
            Encoding.UTF8.GetBytes("""{"test": 2432232314}"""), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");

        Assert.That(signature, Is.EqualTo("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    [Test]
    public void Standard_signature_carries_one_entry_per_secret_in_order()
    {
        var body = "{}"u8.ToArray();
        var current = WebhookSigner.NewSecret();
        var previous = WebhookSigner.NewSecret();

        var both = WebhookSigner.StandardSignature("msg_1", 1, body, current, previous).Split(' ');

        Assert.That(both, Is.EqualTo(new[]
        {
            WebhookSigner.StandardSignature("msg_1", 1, body, current),
            WebhookSigner.StandardSignature("msg_1", 1, body, previous),
        }));
    }

    [Test]
    public void New_secrets_are_whsec_with_32_random_bytes()
    {
        var a = WebhookSigner.NewSecret();
        var b = WebhookSigner.NewSecret();

        Assert.Multiple(() =>
        {
            Assert.That(a, Does.StartWith("whsec_"));
            Assert.That(WebhookSigner.StandardKey(a), Has.Length.EqualTo(32));
            Assert.That(a, Is.Not.EqualTo(b));
        });
    }

    [TestCase("999999999999")]
    [TestCase("-99999999999")]
    [TestCase("9223372036854775807")]
    [TestCase("+1764496800")]
    [TestCase(" 1764496800")]
    [TestCase("")]
    public void The_CSharp_example_verifier_refuses_a_forged_timestamp_without_throwing(string timestamp)
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(1_764_496_800);
        const string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        Assert.Multiple(() =>
        {
            Assert.That(WebhookVerifier.VerifyStandard(secret, "msg_1", timestamp, "v1,x", "{}"u8.ToArray(), now), Is.False);
            Assert.That(WebhookVerifier.VerifyAsymmetric("whpk_" + Convert.ToBase64String(new byte[32]), "msg_1", timestamp, "v1a,x", "{}"u8.ToArray(), now),
                Is.False);
            Assert.That(WebhookVerifier.IsRecent("1764496800", now), Is.True, "the control: a timestamp of now is recent");
        });
    }
}
