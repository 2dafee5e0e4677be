using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Shaping;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>
/// Templates through the API: validation at create/update names the part (and the line and column of
/// a Liquid error), a template that cannot render its event types' examples is refused then, and
/// <c>POST /api/webhooks/{id}/preview</c> shows the exact body, content type and headers (no signatures).
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class TemplateTests
{
    private const string Url = "https://hooks.example.com/t";

    private static IEnumerable<TestCaseData> BadTemplates()
    {
        (string Name, string Template, string Where, string Says)[] cases =
        [
            ("Liquid that does not parse", "{\"liquid\": \"{\\\"a\\\": 1}\\n{% if data.x %}\\nno end\"}", "template.liquid", "Line 3, column"),
            ("an unclosed output tag", "{\"liquid\": \"hello {{ data.from \"}", "template.liquid", "Line 1, column"),
            ("include (no file system)", "{\"liquid\": \"{% include 'secrets' %}\"}", "template.liquid", "Line 1"),
            ("an unknown built-in", """{"builtin": "myspace"}""", "template.builtin", "slack, discord, teams, text"),
            ("both builtin and liquid", """{"builtin": "slack", "liquid": "x"}""", "template", "either builtin"),
            ("a bad content type", """{"liquid": "x", "content_type": "not a type"}""", "template.content_type", "media type"),
            ("a charset other than UTF-8", """{"liquid": "x", "content_type": "application/json; charset=iso-8859-1"}""", "template.content_type", "utf-8"),
            ("two charsets", """{"liquid": "x", "content_type": "application/json;charset=utf-8;charset=latin1"}""", "template.content_type", "utf-8"),
            ("a content type on a built-in", """{"builtin": "text", "content_type": "text/html"}""", "template.content_type", "own content type"),
            ("an unknown field", """{"liquid": "x", "headers": {}}""", "template.headers", "Unknown field"),
            ("a string instead of an object", "\"slack\"", "template", "builtin"),
            ("Liquid too long", $$"""{"liquid": "{{new string('x', 16 * 1024 + 1)}}"}""", "template.liquid", "16384"),
            ("Liquid that fails on the examples", """{"liquid": "{{ data.subject | no_such_filter }}"}""", "template", "no_such_filter"),
            ("Liquid that takes too long on the examples", """{"liquid": "{% assign s = payload %}{% for i in (1..9) %}{% assign s = s | append: s %}{% endfor %}{% for i in (1..2000) %}{% assign a = s | upcase | downcase | replace: 'e', 'E' | size %}{% endfor %}{{ a }}"}""", "template", "ms in all"),
            ("Liquid that loops on the examples", """{"liquid": "{% for i in (1..9000) %}{% for j in (1..9000) %}{% assign x = j %}{% endfor %}{% endfor %}"}""", "template", "steps"),
        ];
        foreach (var (name, template, where, says) in cases)
        {
            yield return new TestCaseData(true, template, where, says).SetName($"POST refuses a template with {name}");
            yield return new TestCaseData(false, template, where, says).SetName($"PATCH refuses a template with {name}");
        }
    }

    [TestCaseSource(nameof(BadTemplates))]
    public async Task A_bad_template_answers_400_naming_its_part_and_changes_nothing(bool create, string template, string where, string says)
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);
        var existing = create ? null : await client.CreateAsync(Url, ["email.received"]);

        var response = create
            ? await client.PostJsonAsync("/api/webhooks", $$"""{"url": "{{Url}}", "event_types": ["email.received"], "template": {{template}}}""")
            : await client.PatchJsonAsync($"/api/webhooks/{existing!.Id()}", $$"""{"template": {{template}}}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        var problem = await response.JsonAsync();
        Assert.That(problem.ErrorFields(), Does.Contain(where));
        Assert.That(problem["errors"]![where]![0]!.GetValue<string>(), Does.Contain(says));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().Where(s => s.UserId == user).ToListAsync());
        Assert.That(stored, create ? Is.Empty : Has.Count.EqualTo(1));
        if (!create) Assert.That(stored[0].Template, Is.Null);
    }

    [Test]
    public async Task A_create_with_a_bad_url_and_a_template_that_fails_on_the_examples_names_both()
    {
        var user = Events.NewUser();
        using var client = TestTokens.Client(user);

        var response = await client.PostJsonAsync("/api/webhooks",
            """{"url": "ftp://hooks.example.com/x", "event_types": ["email.received"], "template": {"liquid": "{{ data.subject | no_such_filter }}"}}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await response.JsonAsync()).ErrorFields(), Is.EquivalentTo(new[] { "url", "template" }));
        Assert.That(response.Headers.RetryAfter, Is.Null);
    }

    [Test]
    public async Task A_template_is_stored_shown_and_removed()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await (await client.PostJsonAsync("/api/webhooks",
            $$$"""{"url": "{{{Url}}}", "event_types": ["task.completed"], "template": {"builtin": "discord"}}""")).JsonAsync();
        Assert.That(created["template"]!.ToJsonString(), Is.EqualTo("""{"builtin":"discord"}"""));
        var id = created.Id();

        var patched = await (await client.PatchJsonAsync($"/api/webhooks/{id}",
            """{"template": {"liquid": "{{ event_type }}", "content_type": "text/plain; charset=utf-8"}}""")).JsonAsync();
        Assert.That(patched["template"]!.ToJsonString(), Is.EqualTo("""{"liquid":"{{ event_type }}","content_type":"text/plain; charset=utf-8"}"""));
        var got = await (await client.GetAsync($"/api/webhooks/{id}")).JsonAsync();
        Assert.That(got["template"]!["liquid"]!.GetValue<string>(), Is.EqualTo("{{ event_type }}"));

        var removed = await (await client.PatchJsonAsync($"/api/webhooks/{id}", """{"template": null}""")).JsonAsync();
        Assert.That(removed["template"], Is.Null);
    }

    [Test]
    public async Task Preview_renders_the_event_types_example_with_the_stored_template_shows_credentials_masked_and_signs_nothing()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await (await client.PostJsonAsync("/api/webhooks",
            $$$"""{"url": "{{{Url}}}", "event_types": ["email.received", "task.completed"], "template": {"builtin": "text"}, "filter": {"event_type": "task.completed"}, "headers": {"Authorization": "Bearer preview-credential-0001", "X-Tenant": "acme"}}""")).JsonAsync();

        var response = await client.PostJsonAsync($"/api/webhooks/{created.Id()}/preview", """{"event_type": "task.completed"}""");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        var preview = await response.JsonAsync();
        var body = preview["body"]!.GetValue<string>();
        var headers = preview["headers"]!.AsObject();
        Assert.Multiple(() =>
        {
            Assert.That(preview["event_type"]!.GetValue<string>(), Is.EqualTo("task.completed"));
            Assert.That(preview["filter_matches"]!.GetValue<bool>(), Is.True);
            Assert.That(preview["content_type"]!.GetValue<string>(), Is.EqualTo("text/plain; charset=utf-8"));
            Assert.That(body, Does.StartWith("task.completed at 2026-11-30T10:00:00.000Z (event "));
            Assert.That(body, Does.Contain("\ntitle: "));
            // A preview's body may be the caller's own template: signing it would sign anything.
            Assert.That(headers["X-Webhook-Signature"]!.GetValue<string>(), Is.EqualTo("(computed when sent)"));
            Assert.That(headers["webhook-signature"]!.GetValue<string>(), Is.EqualTo("(computed when sent)"));
            Assert.That(headers["X-Webhook-Event"]!.GetValue<string>(), Is.EqualTo("task.completed"));
            Assert.That(headers["X-Tenant"]!.GetValue<string>(), Is.EqualTo("acme"));
            Assert.That(headers["Authorization"]!.GetValue<string>(), Does.EndWith("(redacted)"));
            Assert.That(preview.ToJsonString(), Does.Not.Contain("preview-credential"), "the credential is never shown in full");
        });

        // Without an event type: the subscription's first; its filter does not select it.
        var first = await (await client.PostAsync($"/api/webhooks/{created.Id()}/preview", null)).JsonAsync();
        Assert.Multiple(() =>
        {
            Assert.That(first["event_type"]!.GetValue<string>(), Is.EqualTo("email.received"));
            Assert.That(first["filter_matches"]!.GetValue<bool>(), Is.False);
        });
    }

    [Test]
    public async Task Preview_tries_a_template_before_it_is_saved_and_answers_422_when_it_fails()
    {
        using var client = TestTokens.Client(Events.NewUser());
        var created = await client.CreateAsync(Url, ["email.received"]);

        var ok = await (await client.PostJsonAsync($"/api/webhooks/{created.Id()}/preview",
            """{"template": {"liquid": "{\"from\": {{ data.from | json }}}", "content_type": "application/json"}}""")).JsonAsync();
        var failing = await client.PostJsonAsync($"/api/webhooks/{created.Id()}/preview",
            """{"template": {"liquid": "{% for i in (1..5000) %}{{ payload }}{{ payload }}{% endfor %}"}}""");
        var failure = await failing.JsonAsync();
        var plain = await (await client.PostAsync($"/api/webhooks/{created.Id()}/preview", null)).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(ok["body"]!.GetValue<string>(), Does.Match("^\\{\"from\": \"[^\"]+\"\\}$"));
            Assert.That(failing.StatusCode, Is.EqualTo(HttpStatusCode.UnprocessableEntity));
            Assert.That(failure["detail"]!.GetValue<string>(), Does.Contain("output size"));
            Assert.That(JsonNode.Parse(plain["body"]!.GetValue<string>())!["event_type"]!.GetValue<string>(), Is.EqualTo("email.received"),
                "no template: the payload itself");
            Assert.That(plain["content_type"]!.GetValue<string>(), Is.EqualTo("application/json; charset=utf-8"));
        });
        // Nothing was stored by the previews.
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == created.Id()));
        Assert.That(stored.Template, Is.Null);
    }

    [Test]
    public void A_rendered_body_over_the_body_cap_in_bytes_is_an_error_though_under_the_output_limit_in_characters()
    {
        // 120,000 two-byte characters written twice: 240,000 characters, under the 262,144 the
        // template may write, but 480,000 bytes, over the 262,144-byte cap on a body.
        var payload = System.Text.Encoding.UTF8.GetBytes(
            JsonSerializer.Serialize(new { id = Guid.NewGuid(), event_type = "task.completed", created_at = "2026-12-07T15:00:00Z",
                data = new { description = new string('é', 120_000) } }));
        var template = new WebhookTemplate(null, "{{ data.description }}{{ data.description }}", "text/plain; charset=utf-8");
        const int cap = WebhookDispatcher.Deliveries.EventSizeLimit.DefaultMaxEventBytes;

        var twice = TemplateRenderer.Render(template, payload, cap);
        var once = TemplateRenderer.Render(template with { Liquid = "{{ data.description }}" }, payload, cap);

        Assert.Multiple(() =>
        {
            Assert.That(twice.Error, Is.EqualTo($"The rendered body is 480000 bytes of UTF-8, over the {cap}-byte cap on a body (Delivery:MaxEventBytes)."));
            Assert.That(twice.Body, Is.Empty, "nothing to send");
            Assert.That(once.Error, Is.Null, "240,000 bytes fit");
            Assert.That(once.Body, Has.Length.EqualTo(240_000));
        });
    }

    [Test]
    public void Rendering_is_deterministic_and_each_built_in_renders_every_example()
    {
        foreach (var type in Notely.Events.EventCatalog.All)
        {
            var payload = ShapingFields.ExamplePayload(type);
            foreach (var builtIn in BuiltInTemplates.All.Keys)
            {
                var template = new WebhookTemplate(builtIn, null, null);
                var first = TemplateRenderer.Render(template, payload, WebhookDispatcher.Deliveries.EventSizeLimit.DefaultMaxEventBytes);
                Assert.That(first.Error, Is.Null, $"{builtIn} on {type.Name}");
                Assert.That(TemplateRenderer.Render(template, payload, WebhookDispatcher.Deliveries.EventSizeLimit.DefaultMaxEventBytes).Body, Is.EqualTo(first.Body), "the same bytes every time");
                if (first.ContentType.StartsWith("application/json", StringComparison.Ordinal))
                    Assert.DoesNotThrow(() => JsonDocument.Parse(first.Body), $"{builtIn} on {type.Name} is JSON");
            }
        }
    }

    [Test]
    public async Task A_new_process_takes_a_built_in_template_on_its_very_first_save()
    {
        // The first renderings of a process compile the template engine: slower than the check's
        // 250 ms on a busy 2-core machine, which once refused a valid built-in as the user's error.
        await using var service = await ServiceProcess.StartAsync(new Dictionary<string, string>
        {
            ["Dispatcher:Workers"] = "false",
            ["Auth:SigningKey"] = TestTokens.SigningKey,
        });
        var address = await service.WaitUntilServingAsync(TimeSpan.FromSeconds(60));
        Assert.That(address, Is.Not.Null, service.Output);
        using var api = new HttpClient { BaseAddress = address };
        api.DefaultRequestHeaders.Authorization = new("Bearer", TestTokens.For(Events.NewUser()));

        var created = await api.PostAsync("/api/webhooks", new StringContent(
            """{"url": "https://hooks.slack.com/services/T0/B0/x", "event_types": ["email.received", "task.completed", "calendar.event_created"], "template": {"builtin": "slack"}}""",
            System.Text.Encoding.UTF8, "application/json"));

        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Created), await created.Content.ReadAsStringAsync());
    }
}
