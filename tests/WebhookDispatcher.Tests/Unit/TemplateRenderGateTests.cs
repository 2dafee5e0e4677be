using WebhookDispatcher.Shaping;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// Template renderings take turns (<see cref="TemplateRenderGate"/>): a fixed number at once, one
/// user's at most one fewer, the next turn to the waiting user who rendered least lately, and one
/// that waits past its longest wait does not run.
/// </summary>
public sealed class TemplateRenderGateTests
{
    private static readonly RenderedBody Ok = new([1], "text/plain", null);

    private static Func<RenderedBody> Blocking(ManualResetEventSlim release, Action? started = null) => () =>
    {
        started?.Invoke();
        release.Wait(TimeSpan.FromSeconds(30));
        return Ok;
    };

    [Test]
    public async Task A_user_with_costly_renderings_takes_one_turn_of_two_and_another_user_renders_in_the_other()
    {
        using var gate = new TemplateRenderGate(2, TimeProvider.System);
        using var release = new ManualResetEventSlim();
        var running = 0;
        var mallory = Enumerable.Range(0, 3)
            .Select(_ => Task.Run(() => gate.RunAsync("mallory", Blocking(release, () => Interlocked.Increment(ref running)), CancellationToken.None)))
            .ToList();
        await WaitUntilAsync(() => Volatile.Read(ref running) == 1 && gate.Waiting == 2);

        var alice = await gate.RunAsync("alice", () => Ok, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(alice, Is.SameAs(Ok), "alice rendered while mallory's first rendering still ran");
        Assert.That(Volatile.Read(ref running), Is.EqualTo(1), "mallory's others wait: one user takes at most one turn of two");
        release.Set();
        Assert.That((await Task.WhenAll(mallory)).All(r => r == Ok), Is.True);
    }

    [Test]
    public async Task A_freed_turn_goes_to_the_user_who_rendered_least_lately_not_to_the_first_in_line()
    {
        using var gate = new TemplateRenderGate(1, TimeProvider.System);
        // Mallory has rendered for 300 ms lately; bob not at all.
        await gate.RunAsync("mallory", () => { Thread.Sleep(300); return Ok; }, CancellationToken.None);
        using var release = new ManualResetEventSlim();
        var started = false;
        var first = Task.Run(() => gate.RunAsync("carol", Blocking(release, () => Volatile.Write(ref started, true)), CancellationToken.None));
        await WaitUntilAsync(() => Volatile.Read(ref started));
        var order = new List<string>();
        var malloryNext = Task.Run(() => gate.RunAsync("mallory", () => { lock (order) order.Add("mallory"); return Ok; }, CancellationToken.None));
        await WaitUntilAsync(() => gate.Waiting == 1);
        var bobNext = Task.Run(() => gate.RunAsync("bob", () => { lock (order) order.Add("bob"); return Ok; }, CancellationToken.None));
        await WaitUntilAsync(() => gate.Waiting == 2);

        release.Set();
        await Task.WhenAll(first, malloryNext, bobNext);

        Assert.That(order, Is.EqualTo(new[] { "bob", "mallory" }), "bob waited less long but rendered less lately");
    }

    [Test]
    public async Task A_rendering_that_waits_past_its_longest_wait_does_not_run_and_says_why()
    {
        using var gate = new TemplateRenderGate(1, TimeProvider.System);
        using var release = new ManualResetEventSlim();
        var started = false;
        var first = Task.Run(() => gate.RunAsync("mallory", Blocking(release, () => Volatile.Write(ref started, true)), CancellationToken.None));
        await WaitUntilAsync(() => Volatile.Read(ref started));
        var ran = false;

        var second = await gate.RunAsync("alice", () => { ran = true; return Ok; }, CancellationToken.None, TimeSpan.FromMilliseconds(300));

        release.Set();
        await first;
        Assert.Multiple(() =>
        {
            Assert.That(ran, Is.False);
            Assert.That(second.Error, Is.SameAs(TemplateRenderGate.WaitedTooLong));
            Assert.That(second.Transient, Is.True, "retried like a failed request, not failed for good");
            Assert.That(second.Body, Is.Empty);
            Assert.That(gate.Waiting, Is.Zero, "it left the line");
        });
        Assert.That(await gate.RunAsync("alice", () => Ok, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)), Is.SameAs(Ok),
            "the turn it did not take is free again");
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 300 && !condition(); i++) await Task.Delay(50);
        Assert.That(condition(), Is.True);
    }
}
