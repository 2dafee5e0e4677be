using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Shaping;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Delivery;

/// <summary>
/// Filters and templates through the whole pipeline (broker → fan-out → claim → attempt → receiver):
/// a filtered-out event makes no delivery row; a template's body arrives byte-exact, signed, with
/// its content type, the same bytes on a retry; a template that fails records its own outcome and
/// leaves the other deliveries of the event alone.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class ShapingDeliveryTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static async Task<WebhookSubscription> WithAsync(WebhookSubscription s, string? filter = null, WebhookTemplate? template = null)
    {
        var compiled = filter is null ? null : PayloadFilter.Compile(JsonDocument.Parse(filter).RootElement);
        Assert.That(compiled?.Errors ?? [], Is.Empty);
        await Dispatcher.QueryAsync(db => db.Subscriptions.Where(x => x.Id == s.Id).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.Filter, compiled == null ? null : compiled.Json)
            .SetProperty(x => x.FilterPath, compiled == null ? null : compiled.JsonPath)
            .SetProperty(x => x.Template, template == null ? null : template.ToJson())));
        return s;
    }

    [Test]
    public async Task A_filtered_out_event_makes_no_delivery_while_a_matching_one_is_delivered()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var filtered = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url + "/filtered", ["email.received"]),
            filter: """{"data.from": {"$prefix": "alice@"}, "data.to[]": "bob@example.com"}""");
        // Control: no filter, receives both events; once it has both, both events' fan-outs are committed.
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"]);
        var matching = Events.EmailReceived(user);
        var other = Events.EmailReceived(user) with { From = "mallory@example.com" };

        await Dispatcher.PublishAsync(other);
        await Dispatcher.PublishAsync(matching);

        Assert.That(await receiver.WaitForAsync(2, Patience, "/control"), Is.True, "the control received both events");
        Assert.That(await receiver.WaitForAsync(1, Patience, "/filtered"), Is.True);
        var rows = await Dispatcher.QueryAsync(db => db.Deliveries.AsNoTracking().Where(d => d.SubscriptionId == filtered.Id).ToListAsync());
        Assert.Multiple(() =>
        {
            Assert.That(rows.Select(r => r.EventId), Is.EqualTo(new[] { matching.EventId }), "one row, for the matching event");
            Assert.That(receiver.To("/filtered").Select(r => r.Headers["webhook-id"]), Is.EqualTo(new[] { matching.EventId.ToString() }));
        });
    }

    [Test]
    public async Task A_filter_selects_large_events_stored_once_per_event_too()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var filtered = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url + "/filtered", ["email.received"]),
            filter: """{"data.from": "alice@example.com"}""");
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"]);
        var preview = new string('x', EventPayloads.SeparateFromChars + 10);
        var matching = Events.EmailReceived(user) with { BodyPreview = preview };
        var other = Events.EmailReceived(user) with { BodyPreview = preview, From = "mallory@example.com" };

        await Dispatcher.PublishAsync(other);
        await Dispatcher.PublishAsync(matching);

        Assert.That(await receiver.WaitForAsync(2, Patience, "/control"), Is.True, "the control received both events");
        Assert.That(await receiver.WaitForAsync(1, Patience, "/filtered"), Is.True);
        var rows = await Dispatcher.QueryAsync(db => db.Deliveries.AsNoTracking().Where(d => d.SubscriptionId == filtered.Id).ToListAsync());
        Assert.Multiple(() =>
        {
            Assert.That(rows.Select(r => r.EventId), Is.EqualTo(new[] { matching.EventId }));
            Assert.That(rows.Single().Payload, Is.Null, "the payload is stored once per event, not in the row");
            Assert.That(receiver.To("/filtered").Single().Body.Length, Is.GreaterThan(EventPayloads.SeparateFromChars));
        });
    }

    [Test]
    public async Task A_custom_template_body_arrives_byte_exact_signed_with_its_content_type_and_a_retry_sends_the_same_bytes()
    {
        await using var receiver = await TestReceiver.FailingFirstAsync(1, 503);
        var user = Events.NewUser();
        var template = new WebhookTemplate(null,
            "{\"subject\": {{ data.subject | json }}, \"to\": {{ data.to | json }}, \"first\": \"{{ data.to.first }}\", \"at\": \"{{ 'now' | date: '%Y-%m-%d' }}\"}\n",
            "application/vnd.notely+json");
        var s = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 1), template: template);
        var evt = Events.EmailReceived(user);

        await Dispatcher.PublishAsync(evt);

        Assert.That(await receiver.WaitForAsync(2, Patience), Is.True, "a first attempt (503) and its retry");
        var expected = "{\"subject\": \"Quarterly report — draft ✓\", \"to\": [\"bob@example.com\"], \"first\": \"bob@example.com\", \"at\": \"2026-11-30\"}\n";
        var requests = receiver.Requests;
        Assert.Multiple(() =>
        {
            foreach (var request in requests)
            {
                Assert.That(request.Body, Is.EqualTo(Encoding.UTF8.GetBytes(expected)), "byte-exact");
                Assert.That(request.Headers["content-type"], Is.EqualTo("application/vnd.notely+json"));
                Assert.That(Signatures.LegacyVerifies(request, s.Secret), Is.True, "X-Webhook-Signature over the rendered bytes");
                Assert.That(Signatures.StandardVerifies(request, s.Secret), Is.True, "webhook-signature over the rendered bytes");
            }
            Assert.That(requests[1].Body, Is.EqualTo(requests[0].Body), "the retry sends the same bytes");
        });
        Assert.That(await Dispatcher.DeliveryReachesAsync(s.Id, DeliveryStatus.Success, Patience), Is.True);
    }

    [Test]
    public async Task A_slack_template_posts_what_a_slack_incoming_webhook_expects()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var s = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"]), template: new WebhookTemplate("slack", null, null));

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await receiver.WaitForAsync(1, Patience), Is.True);
        var request = receiver.Requests.Single();
        using var body = JsonDocument.Parse(request.Body);
        // Slack's incoming webhooks take {"text": "<mrkdwn>"}; other top-level fields are optional ones it defines (blocks, …).
        Assert.Multiple(() =>
        {
            Assert.That(request.Headers["content-type"], Does.StartWith("application/json"));
            Assert.That(body.RootElement.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "text" }));
            Assert.That(body.RootElement.GetProperty("text").GetString(), Does.StartWith("*email.received* at 2026-11-30T09:15:00.000Z"));
            Assert.That(body.RootElement.GetProperty("text").GetString(), Does.Contain("\nsubject: Quarterly report — draft ✓"));
            Assert.That(body.RootElement.GetProperty("text").GetString(), Does.Contain("\nto: [\"bob@example.com\"]"));
            Assert.That(Signatures.StandardVerifies(request, s.Secret), Is.True);
        });
    }

    [TestCase("{% for i in (1..9000) %}{% for j in (1..9000) %}{% assign x = j %}{% endfor %}{% endfor %}", "steps", TestName = "A template that loops is cut off, recorded as template_error, and other deliveries are unaffected")]
    [TestCase("{% for i in (1..5000) %}{{ payload }}{{ payload }}{{ payload }}{% endfor %}", "output size", TestName = "A template that would render megabytes is cut off, recorded as template_error, and other deliveries are unaffected")]
    [TestCase("{{ data.subject | no_such_filter }}", "no_such_filter", TestName = "A template with an unknown filter is recorded as template_error and not retried")]
    public async Task A_failing_template_records_its_outcome_sends_nothing_and_is_not_retried(string liquid, string says)
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        var failing = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url + "/failing", ["email.received"], retryCount: 3),
            template: new WebhookTemplate(null, liquid, "text/plain"));
        await Dispatcher.SubscribeAsync(user, receiver.Url + "/control", ["email.received"]);

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(failing.Id, DeliveryStatus.Failed, Patience), Is.True, "failed at once");
        Assert.That(await receiver.WaitForAsync(1, Patience, "/control"), Is.True, "the event's other delivery went out");
        var delivery = (await Dispatcher.DeliveriesAsync(failing.Id)).Single();
        Assert.Multiple(() =>
        {
            Assert.That(receiver.To("/failing"), Is.Empty, "nothing was sent");
            Assert.That(delivery.Attempts, Has.Count.EqualTo(1), "not retried");
            Assert.That(delivery.Attempts[0].Outcome, Is.EqualTo(AttemptOutcome.TemplateError));
            Assert.That(delivery.Attempts[0].ErrorMessage, Does.Contain(says));
            Assert.That(delivery.ErrorMessage, Does.Contain("template"));
        });
    }

    [Test]
    public async Task A_template_that_runs_out_of_time_is_retried_and_delivers_once_it_renders_in_time()
    {
        await using var receiver = await TestReceiver.AnsweringAsync(200);
        var user = Events.NewUser();
        // Within the step and output limits, but seconds of string work: stored as a slow machine
        // would find a template that passed its check.
        const string slow = """
            {% assign s = payload %}{% for i in (1..9) %}{% assign s = s | append: s %}{% endfor %}
            {% for i in (1..2000) %}{% assign a = s | upcase | downcase | replace: "e", "E" | size %}{% endfor %}{"n": {{ a }}}
            """;
        var s = await WithAsync(await Dispatcher.SubscribeAsync(user, receiver.Url, ["email.received"], retryCount: 3),
            template: new WebhookTemplate(null, slow, "application/json"));

        await Dispatcher.PublishAsync(Events.EmailReceived(user));

        Assert.That(await Dispatcher.DeliveryReachesAsync(s.Id, DeliveryStatus.Retrying, Patience), Is.True, "retried, not failed at once");
        var first = (await Dispatcher.DeliveriesAsync(s.Id)).Single();
        Assert.That(first.Attempts.Single().Outcome, Is.EqualTo(AttemptOutcome.TemplateError));
        Assert.That(first.Attempts.Single().ErrorMessage, Does.Contain("took longer than 1 s"));
        await WithAsync(s, template: new WebhookTemplate(null, "{\"subject\": {{ data.subject | json }}}", "application/json"));

        Assert.That(await Dispatcher.DeliveryReachesAsync(s.Id, DeliveryStatus.Success, Patience), Is.True);
        Assert.That(receiver.Requests, Has.Count.EqualTo(1));
        Assert.That((await Dispatcher.DeliveriesAsync(s.Id)).Single().Attempts, Has.Count.EqualTo(2));
    }
}
