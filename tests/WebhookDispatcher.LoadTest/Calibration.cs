using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.LoadTest;

/// <summary>One calibration: what one part of this machine did in the same run as the pipeline.</summary>
/// <param name="Name"><c>queue</c>, <c>post</c> or <c>rows</c>.</param>
/// <param name="Count">Messages, POSTs or rows.</param>
/// <param name="Seconds">From the first publish, POST or insert to the last one done.</param>
/// <param name="PerSecond">Count ÷ seconds.</param>
/// <param name="CpuSeconds">CPU seconds used meanwhile, by process group.</param>
internal sealed record CalibrationResult(string Name, int Count, double Seconds, double PerSecond, Dictionary<string, double> CpuSeconds)
{
    public static readonly string[] All = ["queue", "post", "rows"];

    public string Unit => Name switch
    {
        "queue" => "messages/s",
        "post" => "POSTs/s",
        _ => "rows/s",
    };

    public string Describe => Name switch
    {
        "queue" => "RabbitMQ quorum queue, 1 KiB persistent messages, publisher confirms (256 outstanding), one publisher, one consumer (prefetch 100, one ack each)",
        "post" => "signed POSTs (HMAC-SHA256, both signature headers), HttpClient → Kestrel on loopback, 32 at a time",
        _ => "PostgreSQL rows inserted 50 per statement (unnest), each statement its own commit, 4 connections",
    };
}

/// <summary>
/// Measures, with the same tools and on the same servers as the pipeline, what the parts it is
/// built from can do on this machine: a quorum queue's messages/s, signed POSTs/s to the
/// receiver, PostgreSQL rows/s in batched statements. The pipeline's rates are reported as a
/// share of these, which holds across machines and across busy and quiet hours far better than
/// the absolute rates do.
/// </summary>
internal static class Calibration
{
    private const int PublishWindow = 256;
    private const ushort ConsumerPrefetch = 100;
    private const int PostConcurrency = 32;
    private const int RowsPerStatement = 50;
    private const int RowWriters = 4;

    public static Task<CalibrationResult> RunAsync(string name, int count, Receiver receiver, string rabbit, string postgres,
        Func<Dictionary<string, double>> cpu) => name switch
    {
        "queue" => QueueAsync(count, rabbit, cpu),
        "post" => PostAsync(count, receiver, cpu),
        "rows" => RowsAsync(count, postgres, cpu),
        _ => throw new ArgumentException($"unknown calibration {name} (known: {string.Join(", ", CalibrationResult.All)})"),
    };

    private static CalibrationResult Result(string name, int count, long start, Dictionary<string, double> cpu0, Dictionary<string, double> cpu1)
    {
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new CalibrationResult(name, count, Math.Round(seconds, 2), Math.Round(count / seconds, 1),
            cpu1.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value - cpu0[kv.Key], 2)));
    }

    /// <summary>
    /// One publisher channel with confirms publishes <paramref name="count"/> persistent 1 KiB
    /// messages to a new quorum queue, at most 256 awaiting their confirm (as the load generator
    /// publishes events); one consumer on its own channel acknowledges each. Timed from the first
    /// publish to the last acknowledgement; the queue is deleted afterwards.
    /// </summary>
    private static async Task<CalibrationResult> QueueAsync(int count, string rabbit, Func<Dictionary<string, double>> cpu)
    {
        var factory = new ConnectionFactory { Uri = new Uri(rabbit) };
        await using var connection = await factory.CreateConnectionAsync("loadtest-calibration");
        await using var publisher = await connection.CreateChannelAsync(new CreateChannelOptions(
            publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true, outstandingPublisherConfirmationsRateLimiter: null));
        await using var consumerChannel = await connection.CreateChannelAsync();
        var queue = "calibration-quorum-" + Guid.NewGuid().ToString("N")[..8];
        await publisher.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?> { ["x-queue-type"] = "quorum" });
        try
        {
            var body = new byte[1024];
            Random.Shared.NextBytes(body);
            var properties = new BasicProperties { Persistent = true, ContentType = "application/octet-stream" };
            var received = 0;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await consumerChannel.BasicQosAsync(0, ConsumerPrefetch, false);
            var consumer = new AsyncEventingBasicConsumer(consumerChannel);
            consumer.ReceivedAsync += async (_, e) =>
            {
                await consumerChannel.BasicAckAsync(e.DeliveryTag, multiple: false);
                if (Interlocked.Increment(ref received) == count) done.TrySetResult();
            };
            await consumerChannel.BasicConsumeAsync(queue, autoAck: false, consumer);

            var cpu0 = cpu();
            var start = Stopwatch.GetTimestamp();
            using var window = new SemaphoreSlim(PublishWindow);
            var pending = new List<Task>(count);
            for (var i = 0; i < count; i++)
            {
                await window.WaitAsync();
                pending.Add(PublishAsync());
            }
            await Task.WhenAll(pending);
            await done.Task.WaitAsync(TimeSpan.FromMinutes(5));
            var result = Result("queue", count, start, cpu0, cpu());
            return result;

            async Task PublishAsync()
            {
                try
                {
                    // With confirmation tracking the call completes when the broker has confirmed the message.
                    await publisher.BasicPublishAsync("", queue, mandatory: false, properties, body);
                }
                finally
                {
                    window.Release();
                }
            }
        }
        finally
        {
            await publisher.QueueDeleteAsync(queue);
        }
    }

    /// <summary>
    /// <paramref name="count"/> webhook POSTs as the dispatcher makes them (an email.received
    /// webhook's JSON, signed by <see cref="SignedWebhook"/>: HMAC-SHA256 for both signature
    /// headers, fresh for every request) from a plain
    /// HttpClient to the load test's Kestrel receiver, 32 at a time (the default per-subscription
    /// concurrency), each answer read in full.
    /// </summary>
    private static async Task<CalibrationResult> PostAsync(int count, Receiver receiver, Func<Dictionary<string, double>> cpu)
    {
        using var client = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(2),
        });
        var url = receiver.Url + "/fast/calibration-" + Guid.NewGuid().ToString("N")[..8];
        // The shape and size of an email.received webhook (envelope and data) as the dispatcher sends it.
        var payload = JsonSerializer.Serialize(new
        {
            id = Guid.NewGuid(),
            event_type = "email.received",
            created_at = DateTimeOffset.UtcNow,
            data = new
            {
                event_id = Guid.NewGuid(),
                user_id = "calibration",
                occurred_at = DateTimeOffset.UtcNow,
                email_id = "em_calibrat",
                subject = "Quarterly report — draft",
                from = "alice@example.com",
                to = new[] { "bob@example.com" },
                date = DateTimeOffset.UtcNow,
                body_preview = "Hi Bob, attached is the draft of the quarterly report. Numbers are final except for the last week.",
            },
        });
        string[] secrets = [Security.WebhookSigner.NewSecret()];
        var next = -1;
        var failed = 0;
        var cpu0 = cpu();
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, PostConcurrency).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                var request = SignedWebhook.Create(url, payload, "email.received", Guid.NewGuid(), Guid.NewGuid(), secrets, 10, DateTimeOffset.UtcNow);
                using var message = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(request.Body) };
                message.Content.Headers.ContentType = new("application/json") { CharSet = "utf-8" };
                foreach (var (name, value) in request.Headers)
                    message.Headers.TryAddWithoutValidation(name, value);
                using var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
                await response.Content.ReadAsByteArrayAsync();
                if (!response.IsSuccessStatusCode) Interlocked.Increment(ref failed);
            }
        })));
        var result = Result("post", count, start, cpu0, cpu());
        if (failed > 0) throw new InvalidOperationException($"{failed} calibration POSTs failed");
        return result;
    }

    /// <summary>
    /// <paramref name="count"/> rows shaped like deliveries (three uuids, a timestamp, a 512-byte
    /// payload; a primary key and a unique index) inserted into a new table in the run's database,
    /// 50 per <c>INSERT … SELECT FROM unnest(…)</c>, each statement committed on its own, from 4
    /// connections at once. The table is dropped afterwards.
    /// </summary>
    private static async Task<CalibrationResult> RowsAsync(int count, string postgres, Func<Dictionary<string, double>> cpu)
    {
        await using var db = NpgsqlDataSource.Create(postgres);
        var table = "calibration_rows_" + Guid.NewGuid().ToString("N")[..8];
        await using (var create = db.CreateCommand(
            $"CREATE TABLE {table} (id uuid PRIMARY KEY, subscription_id uuid NOT NULL, event_id uuid NOT NULL, payload text NOT NULL, " +
            "created_at timestamptz NOT NULL, UNIQUE (subscription_id, event_id))"))
            await create.ExecuteNonQueryAsync();
        try
        {
            var payload = new string('x', 512);
            var statements = (count + RowsPerStatement - 1) / RowsPerStatement;
            var next = -1;
            var subscription = Guid.NewGuid();
            var cpu0 = cpu();
            var start = Stopwatch.GetTimestamp();
            await Task.WhenAll(Enumerable.Range(0, RowWriters).Select(_ => Task.Run(async () =>
            {
                await using var connection = await db.OpenConnectionAsync();
                while (Interlocked.Increment(ref next) < statements)
                {
                    await using var insert = new NpgsqlCommand(
                        $"INSERT INTO {table} (id, subscription_id, event_id, payload, created_at) " +
                        "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])", connection);
                    var now = DateTimeOffset.UtcNow;
                    insert.Parameters.Add(new() { Value = Enumerable.Range(0, RowsPerStatement).Select(_ => Guid.CreateVersion7()).ToArray() });
                    insert.Parameters.Add(new() { Value = Enumerable.Repeat(subscription, RowsPerStatement).ToArray() });
                    insert.Parameters.Add(new() { Value = Enumerable.Range(0, RowsPerStatement).Select(_ => Guid.NewGuid()).ToArray() });
                    insert.Parameters.Add(new() { Value = Enumerable.Repeat(payload, RowsPerStatement).ToArray() });
                    insert.Parameters.Add(new() { Value = Enumerable.Repeat(now, RowsPerStatement).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
                    await insert.ExecuteNonQueryAsync();
                }
            })));
            return Result("rows", statements * RowsPerStatement, start, cpu0, cpu());
        }
        finally
        {
            await using var drop = db.CreateCommand($"DROP TABLE IF EXISTS {table}");
            await drop.ExecuteNonQueryAsync();
        }
    }

    /// <summary>Formats a rate with thousands separators, invariant.</summary>
    public static string Rate(double v) => v.ToString("N0", CultureInfo.InvariantCulture);
}
