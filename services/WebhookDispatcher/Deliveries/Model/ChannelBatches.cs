using System.Threading.Channels;

namespace WebhookDispatcher.Deliveries;

/// <summary>How the wing's batching loops (fan-out, record) take a batch from their channel.</summary>
public static class ChannelBatches
{
    /// <summary>A batch smaller than this waits its linger for more.</summary>
    public const int LingerBelow = 16;

    /// <summary>
    /// Fills <paramref name="batch"/> (cleared first) with up to <paramref name="max"/> items
    /// already queued; when fewer than <see cref="LingerBelow"/> were, waits <paramref name="linger"/>
    /// and takes those that arrived meanwhile. At moderate rates batches stay small otherwise, and
    /// every statement costs its round trip and planning.
    /// </summary>
    public static async Task GatherAsync<T>(ChannelReader<T> reader, List<T> batch, int max, TimeSpan linger)
    {
        batch.Clear();
        while (batch.Count < max && reader.TryRead(out var item)) batch.Add(item);
        if (batch.Count >= LingerBelow) return;
        await Task.Delay(linger, CancellationToken.None);
        while (batch.Count < max && reader.TryRead(out var item)) batch.Add(item);
    }
}
