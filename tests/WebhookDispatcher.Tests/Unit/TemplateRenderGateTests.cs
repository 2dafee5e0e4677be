using WebhookDispatcher.Shaping;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// Template renderings take turns (<see cref="TemplateRenderGate"/>): one at a time per user, a
/// fixed number at once in all, and one that waits past <see cref="TemplateRenderGate.MaxWait"/>
/// does not run.
/// </summary>
public sealed class TemplateRenderGateTests
{
    private static readonly RenderedBody Ok = new([1], "text/plain", null);

    [Test]
    public async Task A_users_renderings_run_one_at_a_time_while_another_users_run_beside_them()
    {
        using var gate = new TemplateRenderGate(2);
        using var release = new ManualResetEventSlim();
        var running = 0;
        var mostAtOnce = 0;
        RenderedBody Slow()
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref mostAtOnce, now);
            release.Wait(TimeSpan.FromSeconds(30));
            Interlocked.Decrement(ref running);
            return Ok;
        }
        var mallory = Enumerable.Range(0, 3).Select(_ => Task.Run(() => gate.RunAsync("mallory", Slow, CancellationToken.None))).ToList();
        await WaitUntilAsync(() => Volatile.Read(ref running) == 1);

        var alice = await gate.RunAsync("alice", () => Ok, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(alice, Is.SameAs(Ok), "alice rendered while mallory's first rendering still ran");
        Assert.That(Volatile.Read(ref running), Is.EqualTo(1), "mallory's others wait for her first");
        release.Set();
        Assert.That((await Task.WhenAll(mallory)).All(r => r == Ok), Is.True);
        Assert.That(mostAtOnce, Is.EqualTo(1), "never two of one user's at once");
    }

    [Test]
    public async Task No_more_than_the_gates_turns_run_at_once_and_the_next_runs_when_one_ends()
    {
        using var gate = new TemplateRenderGate(1);
        using var release = new ManualResetEventSlim();
        var bob = Task.Run(() => gate.RunAsync("bob", () => { release.Wait(TimeSpan.FromSeconds(30)); return Ok; }, CancellationToken.None));
        await Task.Delay(200);
        var ran = false;
        var carol = gate.RunAsync("carol", () => { ran = true; return Ok; }, CancellationToken.None);
        await Task.Delay(300);

        Assert.That(ran, Is.False, "carol waits for the one turn");
        release.Set();
        Assert.That(await carol.WaitAsync(TimeSpan.FromSeconds(30)), Is.SameAs(Ok));
        Assert.That(await bob, Is.SameAs(Ok));
    }

    [Test]
    public async Task A_rendering_that_waits_past_the_longest_wait_does_not_run_and_says_why()
    {
        using var gate = new TemplateRenderGate(2);
        using var release = new ManualResetEventSlim();
        var first = Task.Run(() => gate.RunAsync("mallory", () => { release.Wait(TimeSpan.FromSeconds(60)); return Ok; }, CancellationToken.None));
        await Task.Delay(200);
        var ran = false;

        var second = await gate.RunAsync("mallory", () => { ran = true; return Ok; }, CancellationToken.None);

        release.Set();
        await first;
        Assert.Multiple(() =>
        {
            Assert.That(ran, Is.False);
            Assert.That(second.Error, Is.SameAs(TemplateRenderGate.WaitedTooLong));
            Assert.That(second.Transient, Is.True, "retried like a failed request, not failed for good");
            Assert.That(second.Body, Is.Empty);
        });
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 300 && !condition(); i++) await Task.Delay(100);
        Assert.That(condition(), Is.True);
    }
}
