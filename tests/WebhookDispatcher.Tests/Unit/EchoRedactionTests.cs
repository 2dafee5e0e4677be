using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// What <see cref="EchoRedaction"/> takes out of a receiver's answer: credential values as sent and
/// as the common encoders write them, and the hidden part of a URL, wherever they stand as a whole;
/// never a value inside a longer word.
/// </summary>
public sealed class EchoRedactionTests
{
    private static readonly Dictionary<string, string> Headers = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Authorization"] = "Bearer abc+def/ghi==XYZ123tokn",
        ["X-Api-Key"] = "1234",
        ["X-Tenant"] = "acme",
        ["webhook-signature"] = "v1,AAAAsignature",
    };

    [TestCase("Bearer abc+def/ghi==XYZ123tokn", "…(redacted)", TestName = "The value as sent")]
    [TestCase("token abc+def/ghi==XYZ123tokn.", "token …(redacted).", TestName = "The token part of Bearer …")]
    [TestCase("\"Bearer abc+def\\/ghi==XYZ123tokn\"", "\"…(redacted)\"", TestName = "JSON as PHP writes it")]
    [TestCase("\"Bearer abc\\u002Bdef/ghi==XYZ123tokn\"", "\"…(redacted)\"", TestName = "JSON as System.Text.Json writes it")]
    [TestCase("Bearer%20abc%2Bdef%2Fghi%3D%3DXYZ123tokn", "…(redacted)", TestName = "URL-encoded")]
    [TestCase("key=1234; apikey1234 ok; 12345", "key=…(redacted); apikey1234 ok; 12345", TestName = "A short value only where it stands alone")]
    [TestCase("tenant acme, v1,AAAAsignature", "tenant acme, v1,AAAAsignature", TestName = "Values of other headers are left")]
    public void A_credential_a_receiver_echoes_is_replaced(string answer, string stored) =>
        Assert.That(EchoRedaction.Redact(answer, Headers), Is.EqualTo(stored));

    [TestCase("https://hooks.slack.com/services/T000/B000/SECRETPATH", 1,
        "HTTP 301: redirects are not followed (Location: https://hooks.slack.com/services/T000/B000/SECRETPATH)",
        "HTTP 301: redirects are not followed (Location: https://hooks.slack.com/services…(redacted))")]
    [TestCase("https://h.example/express/T000/SECRETPATH?sig=QUERYSECRET", 1,
        "Cannot POST /express/T000/SECRETPATH?sig=QUERYSECRET", "Cannot POST /express…(redacted)")]
    [TestCase("https://h.example/express/T000/SECRETPATH?sig=QUERYSECRET", 1,
        "bad signature QUERYSECRET for SECRETPATH", "bad signature …(redacted) for …(redacted)")]
    public void The_part_of_a_url_operators_are_not_shown_is_replaced(string url, int shown, string answer, string seen) =>
        Assert.That(EchoRedaction.RedactUrl(answer, url, shown), Is.EqualTo(seen));
}
