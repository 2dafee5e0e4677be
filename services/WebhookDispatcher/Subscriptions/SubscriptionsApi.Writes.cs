using MassTransit;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>The API's writes of a subscription: create (within the per-user limits), update, delete.</summary>
public static partial class SubscriptionsApi
{
    /// <remarks>
    /// Past <see cref="SubscriptionOptions.MaxPerUser"/> answers 409 and past
    /// <see cref="SubscriptionOptions.CreatesPerMinute"/> 429 with <c>Retry-After</c>, both counted
    /// in the inserting transaction (see <see cref="SubscriptionLimits"/>); a refused create stores
    /// nothing. With an <c>Idempotency-Key</c> (<see cref="IdempotencyKeys"/>) a repeat of the same
    /// request answers with the subscription the first one made, before any limit is counted.
    /// </remarks>
    private static async Task<Results<Created<CreatedSubscriptionResponse>, ValidationProblem, ProblemHttpResult>> Create(
        HttpRequest request, [AsParameters] ApiServices services, CancellationToken cancellationToken)
    {
        var (idempotencyKey, keyProblem) = IdempotencyKeys.Read(request.Headers[IdempotencyKeys.Header]);
        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        var options = services.Options.Value;
        var (fields, errors) = SubscriptionRequest.Read(body.RootElement, isCreate: true, options.RequireHttps, services.Delivery.Value.AllowPrivateNetworks,
            services.Delivery.Value.MaxEventBytes);
        if (fields.Headers is { } asked && !SubscriptionHeaders.KeepMasked(asked, null, (f, m) => errors[f] = errors.TryGetValue(f, out var e) ? [.. e, m] : [m]))
            return TypedResults.ValidationProblem(errors);
        if (keyProblem is not null) errors[IdempotencyKeys.Header] = [keyProblem];
        // Tried even beside other bad fields, so that one answer names them all.
        var templateCheck = await TemplateCheckAsync(null, fields, services, request.HttpContext.Response, cancellationToken);
        if (templateCheck is ValidationProblem badTemplate)
            foreach (var (field, messages) in badTemplate.ProblemDetails.Errors) errors[field] = messages;
        if (errors.Count > 0)
        {
            request.HttpContext.Response.Headers.Remove("Retry-After"); // a 429 of the check not given: the 400 comes first
            return TypedResults.ValidationProblem(errors);
        }
        if (templateCheck is ProblemHttpResult noTurn) return noTurn;
        var fingerprint = idempotencyKey is null ? null : IdempotencyKeys.Fingerprint(body.RootElement);

        var db = services.Db;
        var sealer = services.Sealer;
        var secret = WebhookSigner.NewSecret();
        var scheme = fields.SignatureScheme ?? SignatureSchemes.Hmac;
        var privateKey = SignatureSchemes.UsesEd25519(scheme) ? WebhookSigner.NewPrivateKey() : null;
        var subscription = new WebhookSubscription
        {
            Id = Guid.CreateVersion7(),
            UserId = services.UserId,
            Url = fields.Url!,
            EventTypes = fields.EventTypes!,
            Description = fields.Description,
            Secret = sealer.Seal(secret),
            RetryCount = fields.RetryCount ?? WebhookSubscription.DefaultRetryCount,
            TimeoutSeconds = fields.TimeoutSeconds ?? WebhookSubscription.DefaultTimeoutSeconds,
            RateLimitPerSecond = fields.RateLimitPerSecond,
            Filter = fields.Shaping?.Filter,
            FilterPath = fields.Shaping?.FilterPath,
            Template = fields.Shaping?.Template,
            Headers = fields.Headers is { } headers ? SubscriptionHeaders.ToStored(headers, sealer) : null,
            SignatureScheme = scheme,
            SigningKey = sealer.SealOrNull(privateKey),
            Ordering = fields.Ordering ?? Deliveries.SubscriptionOrdering.None,
            BatchMaxEvents = fields.Batch?.MaxEvents,
            BatchMaxWaitMs = fields.Batch?.MaxWaitMs,
            BatchMaxBytes = fields.Batch?.MaxBytes,
        };
        // The execution strategy retries the whole transaction on a broken connection; a retry
        // after a commit whose answer was lost finds the subscription stored and stops there.
        var (count, earlier) = await db.Database.CreateExecutionStrategy().ExecuteAsync(async ct =>
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var found = await SubscriptionLimits.LockAndCountAsync(db, subscription.UserId, subscription.Id, options.CreatesPerMinute, ct);
            if (found.AlreadyStored) return (found, null);
            if (idempotencyKey is not null
                && await IdempotencyKeys.FindAsync(db, subscription.UserId, idempotencyKey, fingerprint!, ct) is { } before)
                return (found, before);
            if (found.Subscriptions >= options.MaxPerUser || found.WindowFreesAt is not null) return (found, (IdempotencyKeys.Earlier?)null);
            subscription.CreatedAt = subscription.UpdatedAt = found.Now;
            db.Subscriptions.Add(subscription);
            await db.SaveChangesAsync(ct);
            if (idempotencyKey is not null)
                await IdempotencyKeys.StoreAsync(db, subscription.UserId, idempotencyKey, fingerprint!, subscription.Id, found.Now, ct,
                    IdempotencyKeys.SecretHash(secret));
            await tx.CommitAsync(ct);
            return (found, null);
        }, cancellationToken);
        if (earlier is not null) return await RepeatedCreateAsync(earlier, services, cancellationToken);
        if (!count.AlreadyStored)
        {
            // The one that lasts first: waiting out the rate would not help at the count limit.
            if (count.Subscriptions >= options.MaxPerUser) return SubscriptionLimits.TooManySubscriptions(options.MaxPerUser, count.Subscriptions);
            if (count.WindowFreesAt is { } freesAt)
                return SubscriptionLimits.TooManyCreations(request.HttpContext.Response, options.CreatesPerMinute, count.CreatedInWindow, count.Now, freesAt);
        }
        return CreatedAnswer(subscription, sealer);
    }

    /// <summary>
    /// The answer to a create repeated with its <c>Idempotency-Key</c>: the subscription the first
    /// request made, as it is now, with the secret it made, 201; 422 when the key came with another
    /// body; 409 when that subscription was deleted since, or its secret rotated since (the secret a
    /// rotation made is shown only by the rotation).
    /// </summary>
    private static async Task<Results<Created<CreatedSubscriptionResponse>, ValidationProblem, ProblemHttpResult>> RepeatedCreateAsync(
        IdempotencyKeys.Earlier earlier, ApiServices services, CancellationToken cancellationToken)
    {
        if (!earlier.SameRequest)
            return TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity, title: "Idempotency-Key reused",
                detail: $"This {IdempotencyKeys.Header} was sent with another request body in the last {IdempotencyKeys.Lifetime.TotalHours:0} hours; " +
                        "use a new key for a new request. Nothing was created.",
                extensions: new Dictionary<string, object?> { ["field"] = IdempotencyKeys.Header });
        var made = await services.Owned().FirstOrDefaultAsync(x => x.Id == earlier.SubscriptionId, cancellationToken);
        if (made is null || made.DeletedAt is not null)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Created, then deleted",
                detail: $"The subscription {earlier.SubscriptionId} this {IdempotencyKeys.Header} created has been deleted since. Nothing was created.",
                extensions: new Dictionary<string, object?> { ["id"] = earlier.SubscriptionId });
        if (earlier.ResultHash is null || !IdempotencyKeys.SecretHash(services.Sealer.Unseal(made.Secret)).AsSpan().SequenceEqual(earlier.ResultHash))
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Created, then its secret rotated",
                detail: $"The subscription {earlier.SubscriptionId} this {IdempotencyKeys.Header} created has had its secret rotated since; " +
                        "the secret it was created with is no longer shown. Nothing was created.",
                extensions: new Dictionary<string, object?> { ["id"] = earlier.SubscriptionId });
        return CreatedAnswer(made, services.Sealer);
    }

    private static Created<CreatedSubscriptionResponse> CreatedAnswer(WebhookSubscription s, SecretSealer sealer) =>
        TypedResults.Created($"/api/webhooks/{s.Id}", new CreatedSubscriptionResponse(s.Id, s.Url, s.EventTypes, s.Description,
            s.IsActive, s.RetryCount, s.TimeoutSeconds, s.RateLimitPerSecond, s.CreatedAt, s.UpdatedAt, sealer.Unseal(s.Secret),
            SubscriptionHeaders.Masked(s.Headers, sealer), s.SignatureScheme, SubscriptionResponse.PublicKeyOf(s.SigningKey, sealer))
        { Filter = Shaping.ShapingFields.Node(s.Filter), Template = Shaping.ShapingFields.Node(s.Template), Ordering = s.Ordering, Batch = SubscriptionBatch.Of(s) });

    private static async Task<Results<Ok<SubscriptionResponse>, ValidationProblem, ProblemHttpResult>> Update(
        Guid id, HttpRequest request, [AsParameters] ApiServices services, OrderingRelease release, CancellationToken cancellationToken)
    {
        var (document, refused, invalid) = await ApiInput.ReadJsonAsync(request, cancellationToken);
        if (refused is not null) return refused;
        if (invalid is not null) return invalid;
        using var body = document!;
        var (fields, errors) = SubscriptionRequest.Read(body.RootElement, isCreate: false, services.Options.Value.RequireHttps,
            services.Delivery.Value.AllowPrivateNetworks, services.Delivery.Value.MaxEventBytes);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await BatchBesideTemplateAsync(id, fields, services, cancellationToken) is { } batchProblem) return batchProblem;
        switch (await TemplateCheckAsync(id, fields, services, request.HttpContext.Response, cancellationToken))
        {
            case ValidationProblem badTemplate: return badTemplate;
            case ProblemHttpResult noTurn: return noTurn;
        }

        var userId = services.UserId;
        string? storedHeaders = null;
        if (fields.Headers is { } asked)
        {
            // Masked credential values sent back keep what is stored (read here; a PATCH racing
            // another PATCH of the headers keeps the last one whole, as for any field).
            var current = await services.Owned().Where(s => s.Id == id).Select(s => new { s.Headers }).FirstOrDefaultAsync(cancellationToken);
            if (current is null) return NotFound(id);
            if (!SubscriptionHeaders.KeepMasked(asked, SubscriptionHeaders.Open(current.Headers, services.Sealer), (f, m) => errors[f] = errors.TryGetValue(f, out var e) ? [.. e, m] : [m]))
                return TypedResults.ValidationProblem(errors);
            storedHeaders = SubscriptionHeaders.ToStored(asked, services.Sealer);
        }
        // A scheme with Ed25519 chosen for the first time makes the webhook's key pair.
        var newKey = fields.SignatureScheme is { } scheme && SignatureSchemes.UsesEd25519(scheme)
            ? services.Sealer.Seal(WebhookSigner.NewPrivateKey())
            : null;
        if (fields.Any)
        {
            // One conditional UPDATE (the query filter adds deleted_at IS NULL): a PATCH racing a
            // DELETE can never bring the subscription back.
            var now = services.Time.GetUtcNow();
            Task<int> UpdateAsync(CancellationToken ct) => services.Db.Subscriptions.Where(s => s.Id == id && s.UserId == userId).ExecuteUpdateAsync(u =>
            {
                if (fields.Url is not null) u.SetProperty(s => s.Url, fields.Url);
                if (fields.EventTypes is not null) u.SetProperty(s => s.EventTypes, fields.EventTypes);
                if (fields.HasDescription) u.SetProperty(s => s.Description, fields.Description);
                if (fields.RetryCount is { } retryCount) u.SetProperty(s => s.RetryCount, retryCount);
                if (fields.TimeoutSeconds is { } timeout) u.SetProperty(s => s.TimeoutSeconds, timeout);
                if (fields.IsActive is { } active)
                {
                    u.SetProperty(s => s.IsActive, active);
                    // Turning it back on starts a new failure streak; turning it off says who did.
                    u.SetProperty(s => s.DisabledReason, active ? null : DisabledReasons.Owner);
                    u.SetProperty(s => s.DisabledAt, active ? null : now);
                    if (active)
                    {
                        u.SetProperty(s => s.FailingSince, (DateTimeOffset?)null);
                        u.SetProperty(s => s.FailuresSinceSuccess, 0);
                    }
                }
                if (fields.HasRateLimit) u.SetProperty(s => s.RateLimitPerSecond, fields.RateLimitPerSecond);
                if (fields.Shaping is { HasFilter: true } f) u.SetProperty(s => s.Filter, f.Filter).SetProperty(s => s.FilterPath, f.FilterPath);
                if (fields.Shaping is { HasTemplate: true } t) u.SetProperty(s => s.Template, t.Template);
                if (fields.Headers is not null) u.SetProperty(s => s.Headers, storedHeaders);
                if (fields.SignatureScheme is { } scheme) u.SetProperty(s => s.SignatureScheme, scheme);
                if (fields.Ordering is { } ordering) u.SetProperty(s => s.Ordering, ordering);
                if (fields.HasBatch)
                    u.SetProperty(s => s.BatchMaxEvents, fields.Batch == null ? null : fields.Batch.MaxEvents)
                        .SetProperty(s => s.BatchMaxWaitMs, fields.Batch == null ? null : fields.Batch.MaxWaitMs)
                        .SetProperty(s => s.BatchMaxBytes, fields.Batch == null ? null : fields.Batch.MaxBytes);
                if (newKey is not null) u.SetProperty(s => s.SigningKey, s => s.SigningKey ?? newKey);
                u.SetProperty(s => s.UpdatedAt, now);
            }, ct);
            int updated;
            IReadOnlyList<Guid> unbatched = [];
            if (fields.HasBatch && fields.Batch is null)
            {
                // Batching turned off: the events waiting for a batch become single deliveries in the
                // same transaction, so an event stored after the change (a single delivery) can
                // never start before them: of an ordered subscription, they are earlier deliveries
                // of its keys, and the claim's gate sees them (decision 0015).
                (updated, unbatched) = await services.Db.Database.CreateExecutionStrategy().ExecuteAsync(async ct =>
                {
                    await using var tx = await services.Db.Database.BeginTransactionAsync(ct);
                    var count = await UpdateAsync(ct);
                    var released = count == 0 ? [] : await BatchStore.ReleaseWaitingAsync(tx.GetDbTransaction(), id, ct);
                    await tx.CommitAsync(ct);
                    return (count, released);
                }, cancellationToken);
            }
            else updated = await UpdateAsync(cancellationToken);
            if (updated == 0) return NotFound(id);
            // Turned off: the deliveries that waited for their key's turn may start now (decision 0014).
            if (fields.Ordering == Deliveries.SubscriptionOrdering.None) await release.ReleaseAsync(id, cancellationToken);
            if (unbatched.Count > 0) await release.PublishAsync(id, unbatched, "Batching", cancellationToken);
        }
        return await services.Owned().FirstOrDefaultAsync(s => s.Id == id, cancellationToken) is { } subscription
            ? TypedResults.Ok(SubscriptionResponse.From(subscription, services.Sealer))
            : NotFound(id);
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        Guid id, [AsParameters] ApiServices services, CancellationToken cancellationToken)
    {
        var now = services.Time.GetUtcNow();
        var userId = services.UserId;
        var db = services.Db;
        // One statement, so a database that hangs is cut off at the request's deadline: a
        // transaction's first statement carries its BEGIN and ignores cancellation until that is
        // answered (docs/benchmarks/api.md, "A frozen database"). Waiting deliveries stop here, in
        // the same snapshot (the delivery engine's claim also refuses inactive subscriptions);
        // events waiting for a batch too (those in a batch follow their batch: the trigger of
        // migration BatchedDeliveries). Retried once by the execution strategy on a broken connection.
        var deleted = await db.Database.CreateExecutionStrategy().ExecuteAsync(ct => db.Database.ExecuteSqlInterpolatedAsync($"""
            WITH cancelled AS (
                UPDATE webhook_deliveries d
                SET status = 'cancelled', completed_at = {now}, next_retry_at = NULL, error_message = 'Subscription deleted'
                WHERE d.subscription_id = {id} AND (d.status IN ('pending', 'retrying') OR (d.status = 'batched' AND d.batch_id IS NULL))
                  AND EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = {id} AND s.user_id = {userId} AND s.deleted_at IS NULL))
            UPDATE webhook_subscriptions SET deleted_at = {now}, is_active = false, updated_at = {now}
            WHERE id = {id} AND user_id = {userId} AND deleted_at IS NULL
            """, ct), cancellationToken) > 0;
        if (!deleted) return NotFound(id);
        return TypedResults.NoContent();
    }
}
