namespace Notely.Events;

/// <summary>Event type <c>export.completed</c>: A data export finished and is ready to download.</summary>
public sealed record ExportCompleted : INotelyEvent
{
    /// <inheritdoc />
    public required Guid EventId { get; init; }

    /// <inheritdoc />
    public required string UserId { get; init; }

    /// <inheritdoc />
    public required DateTimeOffset OccurredAt { get; init; }

    /// <summary>Identifier of the export.</summary>
    public required string ExportId { get; init; }

    /// <summary>File format, e.g. "zip" or "json".</summary>
    public required string Format { get; init; }

    /// <summary>Where the export can be downloaded (time-limited URL).</summary>
    public required string DownloadUrl { get; init; }

    /// <summary>Size of the export file in bytes.</summary>
    public required long SizeBytes { get; init; }

    /// <summary>When the download URL stops working (UTC).</summary>
    public required DateTimeOffset ExpiresAt { get; init; }
}
