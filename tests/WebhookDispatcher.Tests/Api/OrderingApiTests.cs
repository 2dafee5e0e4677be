using System.Net;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Api;

/// <summary>The <c>ordering</c> field of a subscription and the ordering keys of the catalog, through the API (decision 0014).</summary>
[Parallelizable(ParallelScope.All)]
public sealed class OrderingApiTests
{
    [Test]
    public async Task Ordering_is_none_by_default_set_on_create_changed_by_patch_and_shown_by_get()
    {
        using var api = TestTokens.Client(Events.NewUser());
        var plain = await api.CreateAsync("https://example.com/plain", ["task.updated"]);
        var created = await (await api.PostJsonAsync("/api/webhooks",
            """{"url": "https://example.com/ordered", "event_types": ["task.updated"], "ordering": "per_key"}""")).JsonAsync();
        var patched = await (await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", """{"ordering": "strict"}""")).JsonAsync();
        var read = await (await api.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync();
        var listed = await (await api.GetAsync("/api/webhooks")).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(plain["ordering"]!.GetValue<string>(), Is.EqualTo("none"));
            Assert.That(created["ordering"]!.GetValue<string>(), Is.EqualTo("per_key"));
            Assert.That(patched["ordering"]!.GetValue<string>(), Is.EqualTo("strict"));
            Assert.That(read["ordering"]!.GetValue<string>(), Is.EqualTo("strict"));
            Assert.That(listed["data"]!.AsArray().Select(s => s!["ordering"]!.GetValue<string>()), Is.EquivalentTo(new[] { "none", "strict" }));
        });
    }

    [TestCase("\"fifo\"")]
    [TestCase("\"Per_Key\"")]
    [TestCase("null")]
    [TestCase("true")]
    public async Task A_bad_ordering_answers_400_naming_it_and_changes_nothing(string value)
    {
        using var api = TestTokens.Client(Events.NewUser());
        var created = await (await api.PostJsonAsync("/api/webhooks",
            """{"url": "https://example.com/ordered", "event_types": ["task.updated"], "ordering": "per_key"}""")).JsonAsync();

        var create = await api.PostJsonAsync("/api/webhooks", $$"""{"url": "https://example.com/x", "event_types": ["task.updated"], "ordering": {{value}}}""");
        var patch = await api.PatchJsonAsync($"/api/webhooks/{created.Id()}", $$"""{"ordering": {{value}}, "description": "changed"}""");
        var read = await (await api.GetAsync($"/api/webhooks/{created.Id()}")).JsonAsync();

        Assert.Multiple(async () =>
        {
            Assert.That(create.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await create.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "ordering" }));
            Assert.That(patch.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await patch.JsonAsync()).ErrorFields(), Is.EqualTo(new[] { "ordering" }));
            Assert.That(read["ordering"]!.GetValue<string>(), Is.EqualTo("per_key"));
            Assert.That(read["description"]?.GetValue<string>(), Is.Null, "nothing changed");
        });
    }

    [Test]
    public async Task The_catalog_names_each_event_types_ordering_key()
    {
        using var api = TestTokens.Client(Events.NewUser());
        var catalog = await (await api.GetAsync("/api/webhooks/event-types")).JsonAsync();
        var keys = catalog["event_types"]!.AsArray().ToDictionary(t => t!["name"]!.GetValue<string>(), t => t!["ordering_key_path"]!.GetValue<string>());
        var one = await (await api.GetAsync("/api/webhooks/event-types/calendar.event_deleted")).JsonAsync();

        Assert.Multiple(() =>
        {
            Assert.That(keys["task.deleted"], Is.EqualTo("data.task_id"));
            Assert.That(keys["email.indexed"], Is.EqualTo("data.email_id"));
            Assert.That(keys["user.settings_updated"], Is.EqualTo("user_id"));
            Assert.That(keys, Has.Count.EqualTo(17));
            Assert.That(one["ordering_key_path"]!.GetValue<string>(), Is.EqualTo("data.calendar_event_id"));
        });
    }
}
