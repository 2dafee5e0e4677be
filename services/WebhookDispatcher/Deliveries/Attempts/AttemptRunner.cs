using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Shaping;

namespace WebhookDispatcher.Deliveries;

/// <summary>
/// One attempt of a claimed delivery: sign → send → decide. Never throws: a request that could
/// not be made is an outcome like any other. An attempt starts on its caller's thread (the
/// scheduler's loop) up to its first wait, except with a large body (<see cref="EventPayloads.Large"/>
/// bytes or more): that one leaves the loop at once, waits until its user's large bodies are
/// within <see cref="DeliveryOptions.LargeBodyBytesPerSecondPerUser"/>, and is signed while no
/// other large body is, so a tenant's burst of large events neither stalls the loop that starts
/// every tenant's attempts nor takes the machine's cores from the other tenants.
/// </summary>
public sealed class AttemptRunner : IDisposable
{
    private readonly WebhookSender _sender;
    private readonly TemplateRenderer _templates;
    private readonly TemplateRenderGate _gate;
    private readonly int _maxBodyBytes; // a rendered body's cap (Delivery:MaxEventBytes)
    private readonly SubscriptionSigner _signer;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _largeBodies = new(1, 1);
    private readonly PartitionedRateLimiter<string>? _largeBytes;
    private readonly int _mostKibAtOnce;

    /// <summary>Creates the runner; <paramref name="options"/> gives the pace of large bodies, read once.</summary>
    public AttemptRunner(WebhookSender sender, SubscriptionSigner signer, TimeProvider time, IOptions<DeliveryOptions> options,
        TemplateRenderer templates, TemplateRenderGate gate)
    {
        _sender = sender;
        _signer = signer;
        _templates = templates;
        _gate = gate;
        _time = time;
        _maxBodyBytes = options.Value.MaxEventBytes;
        var perSecond = options.Value.LargeBodyBytesPerSecondPerUser;
        if (perSecond <= 0) return;
        // Tokens are KiB; a second's worth may go at once, and at least one body of the largest size.
        var kibPerSecond = Math.Max(1, perSecond / 1024);
        _mostKibAtOnce = Math.Max(kibPerSecond, Kib(options.Value.MaxEventBytes));
        var bucket = new TokenBucketRateLimiterOptions
        {
            TokenLimit = _mostKibAtOnce,
            TokensPerPeriod = kibPerSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = kibPerSecond * 10,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            AutoReplenishment = true,
        };
        _largeBytes = PartitionedRateLimiter.Create<string, string>(user => RateLimitPartition.GetTokenBucketLimiter(user, _ => bucket));
    }

    /// <summary>Makes the attempt and returns it, decided and ready to be recorded.</summary>
    /// <param name="delivery">The claimed delivery.</param>
    /// <param name="startedAt">The attempt's start as the lane counted it (its rate limit), stored as <c>attempted_at</c>;
    /// also the signature's timestamp and the moment that picks the active secrets.</param>
    public async Task<FinishedAttempt> RunAsync(ClaimedDelivery delivery, DateTimeOffset startedAt)
    {
        WebhookResponse response;
        var (body, contentType) = (delivery.Body, (string?)null);
        try
        {
            if (delivery.Template is not null)
            {
                // Rendered off the caller's thread (the scheduler's loop), once per attempt, in the
                // user's turn (TemplateRenderGate): the same template over the same payload renders
                // the same bytes (TemplateRenderer).
                await Task.Yield();
                var template = delivery.Template;
                var rendered = await _gate.RunAsync(delivery.UserId,
                    () => _templates.Render(delivery.SubscriptionId, template, delivery.Body, _maxBodyBytes), CancellationToken.None);
                if (rendered.Error is not null)
                {
                    // A template that fails fails again: the delivery fails now. One that ran out of
                    // time or of turns may not: it is retried like a request that failed.
                    var failed = new WebhookResponse(AttemptOutcome.TemplateError, null, null,
                        WebhookSender.Storable(rendered.Error, WebhookSender.MaxErrorChars), TimeSpan.Zero, null);
                    var at = _time.GetUtcNow();
                    return new FinishedAttempt(delivery, startedAt, failed, rendered.Transient
                        ? AttemptDecision.Decide(delivery.AttemptNumber, delivery.MaxAttempts, failed, at, delivery.RoundFirstAttempt)
                        : new AttemptDecision(DeliveryStatus.Failed, null, false), at);
                }
                (body, contentType) = (rendered.Body, rendered.ContentType);
            }
            WebhookRequest request;
            if (body.Length < EventPayloads.Large) request = Sign(delivery, body, startedAt);
            else
            {
                await Task.Yield(); // off the caller's thread
                // Not acquired (the user's queue holds 10 s of waits): it goes now, unpaced,
                // rather than wait towards the end of its lease.
                using var paced = _largeBytes is null ? null : await _largeBytes.AcquireAsync(delivery.UserId, Math.Min(Kib(body.Length), _mostKibAtOnce));
                await _largeBodies.WaitAsync();
                try
                {
                    request = Sign(delivery, body, startedAt);
                }
                finally
                {
                    _largeBodies.Release();
                }
            }
            // Once claimed, the attempt runs to its own deadline and is recorded even if the host
            // is stopping: cancelling it halfway would leave a POST the receiver may have handled
            // with no record.
            if (contentType is not null) request = request with { ContentType = contentType };
            response = await _sender.SendAsync(request, CancellationToken.None);
        }
        catch (Exception ex)
        {
            response = new WebhookResponse(AttemptOutcome.ConnectionError, null, null,
                WebhookSender.Storable("The request could not be made: " + ex.Message, WebhookSender.MaxErrorChars), TimeSpan.Zero, null);
        }
        var finishedAt = _time.GetUtcNow();
        var decision = AttemptDecision.Decide(delivery.AttemptNumber, delivery.MaxAttempts, response, finishedAt, delivery.RoundFirstAttempt);
        return new FinishedAttempt(delivery, startedAt, response, decision, finishedAt);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _largeBytes?.Dispose();
        _largeBodies.Dispose();
    }

    private static int Kib(int bytes) => (bytes + 1023) / 1024;

    private WebhookRequest Sign(ClaimedDelivery delivery, byte[] body, DateTimeOffset startedAt) => _signer.Create(delivery, body, startedAt);
}
