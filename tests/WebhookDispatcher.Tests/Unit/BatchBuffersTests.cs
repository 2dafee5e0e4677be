using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>When a forming batch closes (Deliveries/Batching/BatchBuffers.cs): count, bytes, wait, memory bound.</summary>
public sealed class BatchBuffersTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
    private static readonly Guid Sub = Guid.NewGuid();

    private static BatchMember Member(int bytes = 100, BatchLimits? limits = null) =>
        new(Guid.NewGuid(), Sub, bytes, limits ?? new BatchLimits(3, 1000, 1_000_000));

    [Test]
    public void A_batch_closes_when_it_holds_max_events()
    {
        var buffers = new BatchBuffers(1000);
        var closed = new List<ClosedBatch>();
        var members = Enumerable.Range(0, 7).Select(_ => Member()).ToList();
        foreach (var m in members) buffers.Add(m, T0, closed);
        Assert.Multiple(() =>
        {
            Assert.That(closed.Select(c => c.Members.Count), Is.EqualTo(new[] { 3, 3 }));
            Assert.That(closed.SelectMany(c => c.Members), Is.EqualTo(members.Take(6).Select(m => m.DeliveryId)), "in arrival order");
            Assert.That(buffers.Count, Is.EqualTo(1));
        });
    }

    [Test]
    public void A_member_that_would_pass_max_bytes_starts_the_next_batch_and_a_larger_one_goes_alone()
    {
        var limits = new BatchLimits(100, 1000, BatchBody.EnvelopeBytes + 250);
        var buffers = new BatchBuffers(1000);
        var closed = new List<ClosedBatch>();
        var a = Member(120, limits);
        var b = Member(120, limits);
        var big = Member(5000, limits);
        buffers.Add(a, T0, closed);
        buffers.Add(b, T0, closed); // 120 + 1 + 120 fits
        Assert.That(closed, Is.Empty);
        buffers.Add(big, T0, closed);
        Assert.Multiple(() =>
        {
            Assert.That(closed.Select(c => c.Members), Is.EqualTo(new[] { new[] { a.DeliveryId, b.DeliveryId }, new[] { big.DeliveryId } }));
            Assert.That(buffers.Count, Is.Zero);
        });
    }

    [Test]
    public void A_member_with_new_limits_closes_the_forming_batch_under_the_old_ones_and_starts_the_next()
    {
        var old = new BatchLimits(10, 10_000, 1_000_000);
        var changed = old with { MaxEvents = 2 };
        var buffers = new BatchBuffers(1000);
        var closed = new List<ClosedBatch>();
        var before = Enumerable.Range(0, 3).Select(_ => Member(limits: old)).ToList();
        foreach (var m in before) buffers.Add(m, T0, closed);
        Assert.That(closed, Is.Empty, "3 of 10: still forming");

        var after = Enumerable.Range(0, 3).Select(_ => Member(limits: changed)).ToList();
        foreach (var m in after) buffers.Add(m, T0.AddMilliseconds(500), closed);
        Assert.Multiple(() =>
        {
            Assert.That(closed.Select(c => c.Members), Is.EqualTo(new[]
            {
                before.Select(m => m.DeliveryId).ToArray(),
                after.Take(2).Select(m => m.DeliveryId).ToArray(),
            }), "the old batch closes as it stood, no member stored after the change joins it; then batches of the new max_events");
            Assert.That(buffers.Count, Is.EqualTo(1));
            Assert.That(buffers.NextDue(), Is.EqualTo(T0.AddMilliseconds(500 + 10_000)), "the new batch waits from its own first member");
        });

        closed.Clear();
        var waitChanged = changed with { MaxWaitMs = 100 };
        var last = Member(limits: waitChanged);
        buffers.Add(last, T0.AddMilliseconds(600), closed);
        Assert.Multiple(() =>
        {
            Assert.That(closed.Single().Members, Is.EqualTo(new[] { after[2].DeliveryId }), "a new max_wait_ms closes the forming batch too");
            Assert.That(buffers.NextDue(), Is.EqualTo(T0.AddMilliseconds(700)));
        });
    }

    [Test]
    public void A_batch_closes_max_wait_after_its_first_member_and_a_swept_member_at_once()
    {
        var buffers = new BatchBuffers(1000);
        var closed = new List<ClosedBatch>();
        buffers.Add(Member(), T0, closed);
        buffers.Add(Member(), T0.AddMilliseconds(900), closed);
        Assert.That(buffers.NextDue(), Is.EqualTo(T0.AddMilliseconds(1000)));
        buffers.CloseDue(T0.AddMilliseconds(999), closed);
        Assert.That(closed, Is.Empty);
        buffers.CloseDue(T0.AddMilliseconds(1000), closed);
        Assert.That(closed.Single().Members, Has.Count.EqualTo(2));

        closed.Clear();
        buffers.Add(Member(), DateTimeOffset.MinValue, closed);
        buffers.CloseDue(T0, closed);
        Assert.That(closed.Single().Members, Has.Count.EqualTo(1));
    }

    [Test]
    public void Past_the_memory_bound_and_for_a_member_held_already_nothing_is_taken()
    {
        var buffers = new BatchBuffers(2);
        var closed = new List<ClosedBatch>();
        var m = Member();
        Assert.Multiple(() =>
        {
            Assert.That(buffers.Add(m, T0, closed), Is.True);
            Assert.That(buffers.Add(m, T0, closed), Is.False, "held already");
            Assert.That(buffers.Add(Member(), T0, closed), Is.True);
            Assert.That(buffers.Add(Member(), T0, closed), Is.False, "full: left to the sweep");
        });
    }

    [Test]
    public void A_batch_body_is_the_envelope_around_the_exact_payloads_sorted_by_created_at_then_delivery_id()
    {
        var id = Guid.Parse("0193a000-0000-7000-8000-000000000001");
        var late = """{"id":"a","event_type":"email.received","created_at":"2026-12-07T10:00:01.000Z","data":{"x":"é"}}""";
        var early = """{"id":"b","event_type":"email.received","created_at":"2026-12-07T10:00:00.000Z","data":{}}""";
        var body = BatchBody.Build(id, new DateTimeOffset(2026, 12, 7, 10, 0, 2, TimeSpan.Zero), [(Guid.NewGuid(), late), (Guid.NewGuid(), early)]);
        Assert.Multiple(() =>
        {
            Assert.That(body, Is.EqualTo(
                "{\"id\":\"0193a000-0000-7000-8000-000000000001\",\"event_type\":\"batch\",\"created_at\":\"2026-12-07T10:00:02.000Z\",\"events\":[" +
                early + "," + late + "]}"));
            Assert.That(System.Text.Encoding.UTF8.GetByteCount(body),
                Is.EqualTo(BatchBody.Size(System.Text.Encoding.UTF8.GetByteCount(early) + System.Text.Encoding.UTF8.GetByteCount(late), 2)));
        });
    }
}
