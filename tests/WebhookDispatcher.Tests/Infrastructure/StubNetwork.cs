using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>One connect the dispatcher made: the addresses the SSRF guard let through, and the port.</summary>
public sealed record Dial(IPAddress[] Allowed, int Port);

/// <summary>
/// The network a dispatcher under test sees, without internet: test host names resolve to the
/// addresses a test chose (<see cref="Name"/>); unknown names do not resolve. The guard in
/// <see cref="PrivateNetworkGuard"/> filters those addresses as in production; this class only
/// decides where an approved address leads. A "public" address listed in <see cref="Route"/> leads
/// to the local receiver on the URL's port (the production socket code makes that connection);
/// loopback leads to loopback, as it would for real; anything else is unreachable. Every connect
/// is recorded (<see cref="Dials"/>), and the bytes the HTTP client read from each connection are
/// counted (<see cref="BytesReadFrom"/>).
/// </summary>
public sealed class StubNetwork : WebhookNetwork
{
    private readonly ConcurrentDictionary<string, IPAddress[]> _names = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<IPAddress, bool> _routed = new();
    private readonly ConcurrentQueue<Dial> _dials = new();
    private readonly ConcurrentDictionary<int, PortCounters> _ports = new();

    /// <summary>Makes <paramref name="host"/> resolve to <paramref name="addresses"/>, in that order.</summary>
    public void Name(string host, params IPAddress[] addresses) => _names[host] = addresses;

    /// <summary>Makes <paramref name="address"/> (a made-up public address) lead to 127.0.0.1 on the dialled port.</summary>
    public void Route(IPAddress address) => _routed[address] = true;

    /// <summary>Every connect so far.</summary>
    public IReadOnlyList<Dial> Dials => [.. _dials];

    /// <summary>Bytes the dispatcher's HTTP client read from connections to <paramref name="port"/> (headers and body).</summary>
    public long BytesReadFrom(int port) => Interlocked.Read(ref Counters(port).BytesRead);

    /// <summary>Connections to <paramref name="port"/> opened so far, and how many of them the client has closed.</summary>
    public (int Opened, int Closed) ConnectionsTo(int port)
    {
        var counters = Counters(port);
        return (Volatile.Read(ref counters.Opened), Volatile.Read(ref counters.Closed));
    }

    private PortCounters Counters(int port) => _ports.GetOrAdd(port, _ => new PortCounters());

    private sealed class PortCounters
    {
        public long BytesRead;
        public int Opened;
        public int Closed;
    }

    /// <inheritdoc />
    public override Task<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken) =>
        _names.TryGetValue(host, out var addresses)
            ? Task.FromResult(addresses)
            : Task.FromException<IPAddress[]>(new SocketException((int)SocketError.HostNotFound));

    /// <inheritdoc />
    public override async ValueTask<Stream> ConnectAsync(IPAddress[] addresses, int port, CancellationToken cancellationToken)
    {
        _dials.Enqueue(new Dial(addresses, port));
        foreach (var address in addresses)
        {
            var target = _routed.ContainsKey(address) ? IPAddress.Loopback : IPAddress.IsLoopback(address) ? address : null;
            if (target is null) continue; // no route to a private or unknown address on this machine
            var stream = await base.ConnectAsync([target], port, cancellationToken);
            var counters = Counters(port);
            Interlocked.Increment(ref counters.Opened);
            return new CountingStream(stream, n => Interlocked.Add(ref counters.BytesRead, n), () => Interlocked.Increment(ref counters.Closed));
        }
        throw new SocketException((int)SocketError.ConnectionRefused);
    }

    /// <summary>Passes everything through and reports the bytes read and the close.</summary>
    private sealed class CountingStream(Stream inner, Action<int> read, Action closed) : Stream
    {
        private int _disposed;

        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => false;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Counted(inner.Read(buffer, offset, count));
        public override int Read(Span<byte> buffer) => Counted(inner.Read(buffer));
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Counted(await inner.ReadAsync(buffer, cancellationToken));

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            inner.WriteAsync(buffer, offset, count, cancellationToken);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(buffer, cancellationToken);
        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                if (Interlocked.Exchange(ref _disposed, 1) == 0) closed();
            }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync();
            if (Interlocked.Exchange(ref _disposed, 1) == 0) closed();
            GC.SuppressFinalize(this);
        }

        private int Counted(int n)
        {
            read(n);
            return n;
        }
    }
}
