namespace WebhookDispatcher.Deliveries;

/// <summary>
/// One attempt of a claimed delivery: sign → send → decide. Never throws: a request that could
/// not be made is an outcome like any other. An attempt starts on its caller's thread (the
/// scheduler's loop) up to its first wait, except with a large body (<see cref="EventPayloads.Large"/>
/// bytes or more): that one leaves the loop at once and is signed while no other large body is,
/// so a tenant's burst of large events neither stalls the loop that starts every tenant's
/// attempts nor takes more than one core for its signatures.
/// </summary>
public sealed class AttemptRunner(WebhookSender sender, TimeProvider time)
{
    private readonly SemaphoreSlim _largeBodies = new(1, 1);

    /// <summary>Makes the attempt and returns it, decided and ready to be recorded.</summary>
    /// <param name="delivery">The claimed delivery.</param>
    /// <param name="startedAt">The attempt's start as the lane counted it (its rate limit), stored as <c>attempted_at</c>;
    /// also the signature's timestamp and the moment that picks the active secrets.</param>
    public async Task<FinishedAttempt> RunAsync(ClaimedDelivery delivery, DateTimeOffset startedAt)
    {
        WebhookResponse response;
        try
        {
            WebhookRequest request;
            if (delivery.Body.Length < EventPayloads.Large) request = Sign(delivery, startedAt);
            else
            {
                await Task.Yield(); // off the caller's thread
                await _largeBodies.WaitAsync();
                try
                {
                    request = Sign(delivery, startedAt);
                }
                finally
                {
                    _largeBodies.Release();
                }
            }
            // Once claimed, the attempt runs to its own deadline and is recorded even if the host
            // is stopping: cancelling it halfway would leave a POST the receiver may have handled
            // with no record.
            response = await sender.SendAsync(request, CancellationToken.None);
        }
        catch (Exception ex)
        {
            response = new WebhookResponse(AttemptOutcome.ConnectionError, null, null,
                WebhookSender.Storable("The request could not be made: " + ex.Message, WebhookSender.MaxErrorChars), TimeSpan.Zero, null);
        }
        var finishedAt = time.GetUtcNow();
        var decision = AttemptDecision.Decide(delivery.AttemptNumber, delivery.MaxAttempts, response, finishedAt, delivery.RoundFirstAttempt);
        return new FinishedAttempt(delivery, startedAt, response, decision, finishedAt);
    }

    private static WebhookRequest Sign(ClaimedDelivery delivery, DateTimeOffset startedAt) =>
        SignedWebhook.Create(delivery.Url, delivery.Body, delivery.EventType, delivery.Id, delivery.EventId,
            SignedWebhook.ActiveSecrets(delivery.Secret, delivery.PreviousSecret, delivery.PreviousSecretExpiresAt, startedAt),
            delivery.TimeoutSeconds, startedAt);
}
