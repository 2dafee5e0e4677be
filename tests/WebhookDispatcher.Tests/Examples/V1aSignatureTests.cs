using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Notely.Events;
using Notely.WebhookDemo;
using StandardWebhooks;
using StandardWebhooks.Diagnostics;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Examples;

/// <summary>
/// Standard Webhooks <c>v1a</c> (Ed25519) signatures: real deliveries of a webhook signed with
/// both schemes, before and during a rotation, checked by the Python, Node and C# receiver
/// examples with the public key alone; the HMAC part still verifies (with the examples, the
/// StandardWebhooks NuGet package and the svix and standardwebhooks npm packages); an Ed25519-only webhook sends no HMAC; and the test vector
/// published in docs/webhooks.md is what the service signs and what every example accepts.
/// </summary>
[NonParallelizable]
public sealed class V1aSignatureTests
{
    private string _secret = "", _oldKey = "", _newKey = "";
    private ReceivedRequest _beforeRotation = null!, _duringRotation = null!;
    private readonly List<IAsyncDisposable> _processes = [];
    private readonly Dictionary<string, string> _receivers = [];

    public static IEnumerable<TestCaseData> Verifiers() =>
        new[] { "python", "node", "csharp-example" }.Select(v => new TestCaseData(v).SetArgDisplayNames(v));

    [OneTimeSetUp]
    public async Task CaptureRealDeliveriesAsync()
    {
        await using var capture = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var response = await api.PostJsonAsync("/api/webhooks", $$"""{"url": "{{capture.Url}}", "event_types": ["email.received"], "signature_scheme": "both"}""");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created), await response.Content.ReadAsStringAsync());
        var created = await response.JsonAsync();
        _secret = created["secret"]!.GetValue<string>();
        _oldKey = created["public_key"]!.GetValue<string>();
        Assert.That(created["signature_scheme"]!.GetValue<string>(), Is.EqualTo("both"));
        Assert.That(_oldKey, Does.StartWith("whpk_"));
        Assert.That(Convert.FromBase64String(_oldKey[5..]), Has.Length.EqualTo(32));

        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        var rotated = await (await api.PostAsync($"/api/webhooks/{created.Id()}/rotate-secret", null)).JsonAsync();
        _newKey = rotated["public_key"]!.GetValue<string>();
        Assert.That(_newKey, Is.Not.EqualTo(_oldKey));
        Assert.That((await (await api.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync())["public_key"]!.GetValue<string>(), Is.EqualTo(_newKey));
        await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(2, TimeSpan.FromSeconds(30)), Is.True);

        (_beforeRotation, _duringRotation) = (capture.Requests[0], capture.Requests[1]);
        var entries = _duringRotation.Headers["webhook-signature"].Split(' ');
        Assert.That(entries.Count(e => e.StartsWith("v1,")), Is.EqualTo(2), "both secrets sign during the rotation");
        Assert.That(entries.Count(e => e.StartsWith("v1a,")), Is.EqualTo(2), "both private keys sign during the rotation");
    }

    [OneTimeTearDown]
    public async Task StopReceiversAsync()
    {
        foreach (var process in _processes) await process.DisposeAsync();
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_real_delivery_verifies_with_the_public_key_alone(string verifier)
    {
        Assert.That(await VerifiesAsync(verifier, [_oldKey], _beforeRotation), Is.True);
        Assert.That(await VerifiesAsync(verifier, [_newKey], _beforeRotation), Is.False, "not with another key");
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task During_a_rotation_a_delivery_verifies_with_the_old_public_key_and_with_the_new_one(string verifier)
    {
        Assert.That(await VerifiesAsync(verifier, [_oldKey], _duringRotation), Is.True, "old key");
        Assert.That(await VerifiesAsync(verifier, [_newKey], _duringRotation), Is.True, "new key");
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_real_batch_delivery_verifies_with_the_public_key_alone(string verifier)
    {
        await using var capture = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var response = await api.PostJsonAsync("/api/webhooks",
            $$$"""{"url": "{{{capture.Url}}}", "event_types": ["email.received"], "signature_scheme": "ed25519", "batch": {"max_events": 2, "max_wait_ms": 10000}}""");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created), await response.Content.ReadAsStringAsync());
        var key = (await response.JsonAsync())["public_key"]!.GetValue<string>();
        for (var i = 0; i < 2; i++)
            await Dispatcher.PublishAsync((EmailReceived)EventSchemas.Example(EventCatalog.For<EmailReceived>(), user, Guid.NewGuid()));
        Assert.That(await capture.WaitForAsync(1, TimeSpan.FromSeconds(30)), Is.True);
        var batch = capture.Requests[0];
        Assert.That(batch.Headers["x-webhook-event"], Is.EqualTo("batch"));

        Assert.That(await VerifiesAsync(verifier, [key], batch), Is.True);
        Assert.That(await VerifiesAsync(verifier, [_oldKey], batch), Is.False, "not with another key");
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_tampered_body_does_not_verify(string verifier)
    {
        var body = Encoding.UTF8.GetString(_beforeRotation.Body).Replace("\"Quarterly report\"", "\"Quarterly rep0rt\"");
        Assert.That(body, Is.Not.EqualTo(Encoding.UTF8.GetString(_beforeRotation.Body)));

        Assert.That(await VerifiesAsync(verifier, [_oldKey], _beforeRotation with { Body = Encoding.UTF8.GetBytes(body) }), Is.False);
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task A_dual_signed_delivery_verifies_with_the_secret_too(string verifier)
    {
        Assert.That(await VerifiesAsync(verifier, [_secret], _beforeRotation), Is.True);
    }

    [Test]
    public void The_StandardWebhooks_package_still_verifies_the_v1_part_of_a_dual_signed_delivery()
    {
        var v1 = _beforeRotation.Headers["webhook-signature"].Split(' ').Single(e => e.StartsWith("v1,"));
        var headers = new HeaderDictionary
        {
            ["webhook-id"] = _beforeRotation.Headers["webhook-id"],
            ["webhook-timestamp"] = _beforeRotation.Headers["webhook-timestamp"],
            ["webhook-signature"] = _beforeRotation.Headers["webhook-signature"],
        };
        // It reads the v1 entries of the header as given (its loop skips the v1a one); see ReceiverExampleTests for its one-entry limit.
        Assert.DoesNotThrow(() => new StandardWebhook(_secret).Verify(Encoding.UTF8.GetString(_beforeRotation.Body), headers));
        headers["webhook-signature"] = v1;
        Assert.DoesNotThrow(() => new StandardWebhook(_secret).Verify(Encoding.UTF8.GetString(_beforeRotation.Body), headers));
        Assert.Throws<WebhookVerificationException>(() => new StandardWebhook(WebhookSigner.NewSecret()).Verify(Encoding.UTF8.GetString(_beforeRotation.Body), headers));
    }

    [Test]
    public async Task The_svix_and_standardwebhooks_npm_libraries_still_verify_the_v1_part_of_a_dual_signed_delivery()
    {
        async Task<JsonNode> VerifyAsync(string secret, ReceivedRequest request)
        {
            var input = new JsonObject
            {
                ["secret"] = secret,
                ["headers"] = new JsonObject
                {
                    ["webhook-id"] = request.Headers["webhook-id"],
                    ["webhook-timestamp"] = request.Headers["webhook-timestamp"],
                    ["webhook-signature"] = request.Headers["webhook-signature"],
                },
                ["body"] = Encoding.UTF8.GetString(request.Body),
            };
            var start = new ProcessStartInfo("node", [Repo.Path("tests/tools/verify-v1-libraries.js")])
            {
                WorkingDirectory = Repo.Path("tests/tools"), RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            };
            using var process = Process.Start(start)!;
            await process.StandardInput.WriteAsync(input.ToJsonString());
            process.StandardInput.Close();
            var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.That(process.ExitCode, Is.Zero, output);
            return JsonNode.Parse(output)!;
        }

        var genuine = await VerifyAsync(_secret, _beforeRotation);
        var wrongSecret = await VerifyAsync(WebhookSigner.NewSecret(), _beforeRotation);

        Assert.Multiple(() =>
        {
            Assert.That(_beforeRotation.Headers["webhook-signature"], Does.Contain("v1a,"), "the request also carries v1a");
            Assert.That(genuine["standardwebhooks"]!.GetValue<bool>(), Is.True, "standardwebhooks (npm)");
            Assert.That(genuine["svix"]!.GetValue<bool>(), Is.True, "svix (npm)");
            Assert.That(wrongSecret["standardwebhooks"]!.GetValue<bool>(), Is.False);
            Assert.That(wrongSecret["svix"]!.GetValue<bool>(), Is.False);
        });
    }

    [Test]
    public async Task An_ed25519_only_webhook_sends_no_hmac_and_the_Python_receiver_accepts_it_live()
    {
        var user = Events.NewUser();
        using var api = TestTokens.Client(user);
        var created = await (await api.PostJsonAsync("/api/webhooks",
            """{"url": "https://example.com/placeholder", "event_types": ["task.completed"], "signature_scheme": "ed25519"}""")).JsonAsync();
        var url = await StartReceiverAsync("python", [created["public_key"]!.GetValue<string>()]);
        Assert.That((await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"url": "{{url}}/notely"}""")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await using var capture = await TestReceiver.AnsweringAsync(200);
        var test = await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"url": "{{capture.Url}}"}""");
        Assert.That((await api.PostAsync($"/api/webhooks/{created.Id()}/test", null)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"url": "{{url}}/notely"}""");

        await Dispatcher.PublishAsync((TaskCompleted)EventSchemas.Example(EventCatalog.For<TaskCompleted>(), user, Guid.NewGuid()));

        Assert.That(await Dispatcher.DeliveryReachesAsync(created.Id(), DeliveryStatus.Success, TimeSpan.FromSeconds(30)), Is.True,
            (await Dispatcher.DeliveriesAsync(created.Id())).SingleOrDefault()?.ErrorMessage);
        var sent = capture.Requests.Single();
        Assert.Multiple(() =>
        {
            Assert.That(test.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(sent.Headers, Does.Not.ContainKey("x-webhook-signature"));
            Assert.That(sent.Headers["webhook-signature"], Does.StartWith("v1a,").And.Not.Contain("v1,"));
        });
    }

    [Test]
    public void The_service_signs_the_published_test_vector()
    {
        var v = Vector();

        Assert.Multiple(() =>
        {
            Assert.That(WebhookSigner.PublicKey(v["private-key"]), Is.EqualTo(v["public-key"]));
            Assert.That(WebhookSigner.AsymmetricSignature(v["webhook-id"], long.Parse(v["webhook-timestamp"]), Encoding.UTF8.GetBytes(v["body"]),
                v["private-key"]), Is.EqualTo(v["webhook-signature"]));
        });
    }

    [TestCaseSource(nameof(Verifiers))]
    public async Task Every_example_verifies_the_published_test_vector(string verifier)
    {
        var v = Vector();
        var at = DateTimeOffset.FromUnixTimeSeconds(long.Parse(v["webhook-timestamp"]));
        bool Verifies(string signature) => verifier switch
        {
            "csharp-example" => WebhookVerifier.VerifyAsymmetric(v["public-key"], v["webhook-id"], v["webhook-timestamp"], signature,
                Encoding.UTF8.GetBytes(v["body"]), at),
            _ => RunVerifier(verifier, v, signature),
        };
        var tampered = v["webhook-signature"][..10] + (v["webhook-signature"][10] == 'A' ? 'B' : 'A') + v["webhook-signature"][11..];

        Assert.That(await Task.Run(() => Verifies(v["webhook-signature"])), Is.True);
        Assert.That(await Task.Run(() => Verifies(tampered)), Is.False);
    }

    /// <summary>The test vector of docs/webhooks.md: the lines "name: value" of the block after its marker.</summary>
    private static Dictionary<string, string> Vector()
    {
        var doc = File.ReadAllText(Repo.Path("docs/webhooks.md"));
        var block = doc[doc.IndexOf("<!-- v1a-test-vector -->", StringComparison.Ordinal)..];
        block = block[(block.IndexOf("```", StringComparison.Ordinal) + 3)..];
        block = block[..block.IndexOf("```", StringComparison.Ordinal)];
        return block.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .ToDictionary(l => l[..l.IndexOf(": ", StringComparison.Ordinal)], l => l[(l.IndexOf(": ", StringComparison.Ordinal) + 2)..]);
    }

    /// <summary>The Python or Node example's verify function on the vector, called with the vector's time as now.</summary>
    private static bool RunVerifier(string language, Dictionary<string, string> v, string signature)
    {
        var headers = new JsonObject { ["webhook-id"] = v["webhook-id"], ["webhook-timestamp"] = v["webhook-timestamp"], ["webhook-signature"] = signature }
            .ToJsonString();
        var (file, args) = language == "python"
            ? (Repo.Python, new[] { "-c", """
                import json, sys
                sys.path.insert(0, "docs/examples/python")
                import verify_webhook as v
                try:
                    v.verify_standard([sys.argv[1]], json.loads(sys.argv[2]), sys.argv[3].encode(), now=int(sys.argv[4]))
                    print("verified")
                except v.WebhookVerificationError as e:
                    print("refused", e)
                """ })
            : ("node", new[] { "-e", """
                const v = require('./docs/examples/node/verify-webhook.js');
                const [key, headers, body, now] = process.argv.slice(1);
                try { v.verifyStandard([key], JSON.parse(headers), Buffer.from(body, 'utf8'), Number(now)); console.log('verified'); }
                catch (e) { if (!(e instanceof v.WebhookVerificationError)) throw e; console.log('refused', e.message); }
                """ });
        var start = new ProcessStartInfo(file) { WorkingDirectory = Repo.Root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args.Concat(language == "node" ? ["--"] : Array.Empty<string>())) start.ArgumentList.Add(arg);
        foreach (var arg in new[] { v["public-key"], headers, v["body"], v["webhook-timestamp"] }) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.That(process.ExitCode, Is.Zero, output);
        return output.StartsWith("verified", StringComparison.Ordinal);
    }

    private async Task<bool> VerifiesAsync(string verifier, string[] keys, ReceivedRequest request)
    {
        if (verifier == "csharp-example")
            return keys.Any(k => k.StartsWith("whpk_", StringComparison.Ordinal)
                ? WebhookVerifier.VerifyAsymmetric(k, request.Headers["webhook-id"], request.Headers["webhook-timestamp"], request.Headers["webhook-signature"],
                    request.Body, DateTimeOffset.UtcNow)
                : WebhookVerifier.VerifyStandard(k, request.Headers["webhook-id"], request.Headers["webhook-timestamp"], request.Headers["webhook-signature"],
                    request.Body, DateTimeOffset.UtcNow));
        var url = await StartReceiverAsync(verifier, keys);
        using var client = new HttpClient();
        var message = new HttpRequestMessage(HttpMethod.Post, url + "/webhooks") { Content = new ByteArrayContent(request.Body) };
        message.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(request.Headers["content-type"]);
        foreach (var name in new[] { "webhook-id", "webhook-timestamp", "webhook-signature", "x-webhook-signature" })
            if (request.Headers.TryGetValue(name, out var value)) message.Headers.TryAddWithoutValidation(name, value);
        var response = await client.SendAsync(message);
        var answer = (await response.Content.ReadFromJsonAsync<JsonNode>())!;
        return answer["ok"]!.GetValue<bool>();
    }

    /// <summary>Starts (once per language and keys) the example receiver on a free port; returns its base URL.</summary>
    private async Task<string> StartReceiverAsync(string language, string[] keys)
    {
        var key = language + " " + string.Join(",", keys);
        if (_receivers.TryGetValue(key, out var known)) return known;
        var (runtime, script) = language == "python"
            ? (Repo.Python, "docs/examples/python/verify_webhook.py")
            : ("node", "docs/examples/node/verify-webhook.js");
        var process = ChildProcess.Start(runtime, [Repo.Path(script)], Repo.Root,
            new Dictionary<string, string> { ["WEBHOOK_SECRET"] = string.Join(" ", keys), ["PORT"] = "0" });
        _processes.Add(process);
        Assert.That(await process.WaitForOutputAsync("listening on ", TimeSpan.FromSeconds(30)), Is.True, process.Output);
        var url = process.Output.Split('\n').First(l => l.StartsWith("listening on ", StringComparison.Ordinal))["listening on ".Length..].Trim();
        return _receivers[key] = url;
    }
}
