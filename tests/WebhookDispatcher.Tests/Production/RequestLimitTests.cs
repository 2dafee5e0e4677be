using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.EntityFrameworkCore;
using WebhookDispatcher.Subscriptions;
using WebhookDispatcher.Tests.Api;
using WebhookDispatcher.Tests.Infrastructure;

namespace WebhookDispatcher.Tests.Production;

/// <summary>
/// Request limits of the management API over a real socket (Kestrel on 127.0.0.1; the in-memory
/// test server enforces no body size): bodies over 64 KiB answer 413, compressed bodies 415, and
/// neither changes anything.
/// </summary>
[Parallelizable(ParallelScope.All)]
public sealed class RequestLimitTests
{
    private const int Limit = (int)ApiInput.MaxBodyBytes;

    /// <summary>A valid create body padded with trailing JSON whitespace to exactly <paramref name="size"/> bytes.</summary>
    private static byte[] Padded(int size, string url = "http://hooks.example.com/h")
    {
        var json = Encoding.UTF8.GetBytes($$"""{"url":"{{url}}","event_types":["task.created"]}""");
        var body = new byte[size];
        Array.Fill(body, (byte)' ');
        json.CopyTo(body, 0);
        return body;
    }

    /// <summary>
    /// A request whose body is sent with Content-Length (<paramref name="chunkSize"/> 0) or chunked,
    /// one chunk per <paramref name="chunkSize"/> bytes.
    /// </summary>
    private static HttpRequestMessage Post(string path, byte[] body, int chunkSize, HttpMethod? method = null)
    {
        var request = new HttpRequestMessage(method ?? HttpMethod.Post, path)
        {
            Content = chunkSize == 0 ? new ByteArrayContent(body) : new ChunkedContent(body, chunkSize),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return request;
    }

    /// <summary>A body of unknown length, so HttpClient sends it chunked: one chunk per write.</summary>
    private sealed class ChunkedContent(byte[] body, int chunkSize) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            for (var i = 0; i < body.Length; i += chunkSize)
                await stream.WriteAsync(body.AsMemory(i, Math.Min(chunkSize, body.Length - i)));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    [TestCase(0, Limit, TestName = "A body of exactly 64 KiB with Content-Length is accepted")]
    [TestCase(Limit, Limit, TestName = "A body of exactly 64 KiB in one chunk is accepted")]
    [TestCase(16, Limit, TestName = "A body of exactly 64 KiB in 16-byte chunks is accepted (the limit counts content, not chunk framing)")]
    [TestCase(1, 20_000, TestName = "A 20,000-byte body in 1-byte chunks is accepted")]
    public async Task A_body_within_the_limit_is_accepted(int chunkSize, int size)
    {
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);

        var response = await client.SendAsync(Post("/api/webhooks", Padded(size), chunkSize));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created), await response.Content.ReadAsStringAsync());
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.EqualTo(1));
    }

    [TestCase(0, TestName = "A body one byte over 64 KiB with Content-Length answers 413")]
    [TestCase(Limit + 1, TestName = "A body one byte over 64 KiB in one chunk answers 413")]
    [TestCase(16, TestName = "A body one byte over 64 KiB in 16-byte chunks answers 413")]
    public async Task A_body_over_the_limit_answers_413_and_stores_nothing(int chunkSize)
    {
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);

        var response = await client.SendAsync(Post("/api/webhooks", Padded(Limit + 1), chunkSize));

        Assert.Multiple(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That((await response.JsonAsync())["status"]!.GetValue<int>(), Is.EqualTo(413));
            Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.Zero);
        });
    }

    [Test]
    public async Task A_patch_over_the_limit_answers_413_and_changes_nothing()
    {
        using var client = ProductionSetup.Workers.Client(Events.NewUser());
        var created = await client.CreateAsync("http://hooks.example.com/before", ["task.created"]);

        var response = await client.SendAsync(Post($"/api/webhooks/{created.Id()}", Padded(Limit + 1, "http://hooks.example.com/after"),
            chunkSize: 0, HttpMethod.Patch));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        var stored = await Dispatcher.QueryAsync(db => db.Subscriptions.AsNoTracking().SingleAsync(s => s.Id == created.Id()));
        Assert.That(stored.Url, Is.EqualTo("http://hooks.example.com/before"));
    }

    [TestCase("gzip")]
    [TestCase("deflate")]
    [TestCase("br")]
    public async Task A_compressed_body_answers_415_and_stores_nothing_while_the_same_body_plain_is_accepted(string encoding)
    {
        var user = Events.NewUser();
        using var client = ProductionSetup.Workers.Client(user);
        var json = Encoding.UTF8.GetBytes("""{"url":"http://hooks.example.com/z","event_types":["task.created"]}""");
        using var compressed = new MemoryStream();
        await using (Stream zip = encoding switch
                     {
                         "gzip" => new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true),
                         "deflate" => new ZLibStream(compressed, CompressionLevel.Fastest, leaveOpen: true),
                         _ => new BrotliStream(compressed, CompressionLevel.Fastest, leaveOpen: true),
                     })
            await zip.WriteAsync(json);
        var request = Post("/api/webhooks", compressed.ToArray(), chunkSize: 0);
        request.Content!.Headers.ContentEncoding.Add(encoding);

        var response = await client.SendAsync(request);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType), await response.Content.ReadAsStringAsync());
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That(await Dispatcher.QueryAsync(db => db.Subscriptions.CountAsync(s => s.UserId == user)), Is.Zero);

        var plain = await client.SendAsync(Post("/api/webhooks", json, chunkSize: 0));
        Assert.That(plain.StatusCode, Is.EqualTo(HttpStatusCode.Created));
    }
}
