using System.ComponentModel.DataAnnotations;

namespace WebhookDispatcher.Deliveries;

/// <summary>Settings of the batch stage (section <c>Batching</c>): its memory bound and its sweep (docs/operations.md).</summary>
public sealed class BatchingOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Batching";

    /// <summary>
    /// Members one process holds in its forming batches at most (1,000–1,000,000; default
    /// 100,000, a few MB). Past it a member stays waiting in the database and the sweep forms its
    /// batch, up to the sweep's grace later.
    /// </summary>
    [Range(1000, 1_000_000)]
    public int MaxBufferedMembers { get; set; } = 100_000;

    /// <summary>Batches formed at once at most (1–16; default 4): each is one transaction on its own connection.</summary>
    [Range(1, 16)]
    public int MaxConcurrentCloses { get; set; } = 4;

    /// <summary>Seconds between two sweeps for members left waiting (1–3600; default 2). Any replica may sweep.</summary>
    [Range(1, 3600)]
    public int SweepSeconds { get; set; } = 2;

    /// <summary>
    /// Seconds past its subscription's <c>max_wait_ms</c> a member may wait before the sweep forms
    /// its batch (1–3600; default 5). It bounds how late the events of a dispatcher that died come
    /// (max_wait + grace + <see cref="SweepSeconds"/>).
    /// </summary>
    [Range(1, 3600)]
    public int SweepGraceSeconds { get; set; } = 5;

    /// <summary>Members one sweep pass reads at most (100–100,000; default 5,000); the next pass takes the rest.</summary>
    [Range(100, 100_000)]
    public int SweepBatchSize { get; set; } = 5000;
}
