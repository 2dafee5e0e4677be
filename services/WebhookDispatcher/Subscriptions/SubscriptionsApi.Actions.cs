using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Payloads;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <content>Actions on one subscription besides reading and changing it: a test send and the rotation of its secret.</content>
public static partial class SubscriptionsApi
{
    /// <summary>
    /// What <c>/test</c> answers when no connection was attempted because the host name did not
    /// resolve or resolved only to addresses webhooks may not reach. One message for both, and no
    /// timing, so the endpoint cannot be used to learn which internal names exist.
    /// </summary>
    public const string TestUnreachableMessage =
        "No connection was made: the URL's host does not lead to an address webhooks can be sent to.";

    private static async Task<Results<Ok<TestResponse>, ProblemHttpResult>> Test(
        Guid id, [AsParameters] ApiServices services, WebhookSender sender, SubscriptionSigner signer, ILoggerFactory logs,
        IOptions<DatabaseOptions> database, CancellationToken cancellationToken)
    {
        // The send below may wait for the subscriber for its timeout; the read, only for the database's deadline.
        var s = await DatabaseDeadline.WithinAsync(database.Value, ct => services.Owned().FirstOrDefaultAsync(x => x.Id == id, ct), cancellationToken);
        if (s is null) return NotFound(id);
        var now = services.Time.GetUtcNow();
        var eventId = Guid.NewGuid();
        var payload = WebhookPayload.Build(eventId, "webhook.test", now,
            new JsonObject { ["message"] = "Test webhook from Notely", ["subscription_id"] = s.Id });
        // Through the subscription's template, as a delivery would be.
        var rendered = s.Template is null
            ? new Shaping.RenderedBody(System.Text.Encoding.UTF8.GetBytes(payload), "", null)
            : await services.Renders.RunAsync(services.UserId, () => Shaping.TemplateRenderer.Render(Shaping.WebhookTemplate.FromJson(s.Template),
                System.Text.Encoding.UTF8.GetBytes(payload), services.Delivery.Value.MaxEventBytes), cancellationToken, RenderWait);
        if (rendered.Error is not null) return TypedResults.Ok(new TestResponse(false, null, 0, rendered.Error));
        var request = signer.Create(s, rendered.Body, "webhook.test", Guid.NewGuid(), eventId, now)
            with { ContentType = s.Template is null ? null : rendered.ContentType };
        var response = await sender.SendAsync(request, cancellationToken);
        if (response.Outcome is AttemptOutcome.BlockedAddress or AttemptOutcome.DnsFailure)
        {
            // The real reason is for the server's log only: told to the caller, it would say whether
            // an internal name exists (private address) or not (no such name).
            logs.CreateLogger(typeof(SubscriptionsApi)).LogInformation(
                "Test send of webhook {SubscriptionId} made no connection ({Outcome}): {Reason}", s.Id, response.Outcome, response.ErrorMessage);
            return TypedResults.Ok(new TestResponse(false, null, 0, TestUnreachableMessage));
        }
        return TypedResults.Ok(new TestResponse(response.IsSuccess, response.StatusCode, (long)response.Duration.TotalMilliseconds,
            response.ErrorMessage));
    }

    /// <remarks>
    /// With an <c>Idempotency-Key</c> (<see cref="IdempotencyKeys"/>) the rotation and its key are
    /// stored in one transaction, and a repeat answers the secret the first one made while it is
    /// still the current one (409 once rotated again since), so a lost answer does not cost the
    /// previous secret its grace period.
    /// </remarks>
    private static async Task<Results<Ok<RotatedSecretResponse>, ValidationProblem, ProblemHttpResult>> RotateSecret(
        Guid id, HttpRequest request, [AsParameters] ApiServices services, CancellationToken cancellationToken)
    {
        var (idempotencyKey, keyProblem) = IdempotencyKeys.Read(request.Headers[IdempotencyKeys.Header]);
        if (keyProblem is not null) return ApiInput.Invalid(IdempotencyKeys.Header, keyProblem);
        var userId = services.UserId;
        var found = await services.Owned().Where(s => s.Id == id).Select(s => new { s.Secret, s.SigningKey }).FirstOrDefaultAsync(cancellationToken);
        if (found is null) return NotFound(id);
        var current = found.Secret;
        var now = services.Time.GetUtcNow().ToDatabasePrecision();
        var secret = WebhookSigner.NewSecret();
        var sealer = services.Sealer;
        // The Ed25519 key (when there is one) rotates with the secret and has the same grace.
        var privateKey = found.SigningKey is null ? null : WebhookSigner.NewPrivateKey();
        var sealedKey = sealer.SealOrNull(privateKey);
        var expires = now.AddHours(services.Options.Value.SecretRotationGraceHours);
        var answer = new RotatedSecretResponse(secret, expires, privateKey is null ? null : WebhookSigner.PublicKey(privateKey));
        // Compare-and-swap on the secret: of two rotations at once one wins and the other gets 409,
        // so no caller is handed a secret that never signs.
        Task<int> RotateAsync(CancellationToken ct) => services.Db.Subscriptions.Where(s => s.Id == id && s.UserId == userId && s.Secret == current)
            .ExecuteUpdateAsync(u =>
            {
                u.SetProperty(s => s.PreviousSecret, current).SetProperty(s => s.PreviousSecretExpiresAt, expires)
                    .SetProperty(s => s.Secret, sealer.Seal(secret)).SetProperty(s => s.UpdatedAt, now);
                if (sealedKey is not null) u.SetProperty(s => s.PreviousSigningKey, s => s.SigningKey).SetProperty(s => s.SigningKey, sealedKey);
            }, ct);
        if (idempotencyKey is null)
            return await RotateAsync(cancellationToken) == 1 ? TypedResults.Ok(answer) : RotatedMeanwhile();

        var db = services.Db;
        var fingerprint = IdempotencyKeys.RotationFingerprint(id);
        return await db.Database.CreateExecutionStrategy().ExecuteAsync(async ct =>
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            if (await IdempotencyKeys.FindAsync(db, userId, idempotencyKey, fingerprint, ct) is { } earlier)
                return await RepeatedRotationAsync(earlier, id, services, ct);
            if (await RotateAsync(ct) != 1) return RotatedMeanwhile();
            await IdempotencyKeys.StoreAsync(db, userId, idempotencyKey, fingerprint, id, now, ct, IdempotencyKeys.SecretHash(secret));
            await tx.CommitAsync(ct);
            return (Results<Ok<RotatedSecretResponse>, ValidationProblem, ProblemHttpResult>)TypedResults.Ok(answer);
        }, cancellationToken);
    }

    private static ProblemHttpResult RotatedMeanwhile() => TypedResults.Problem(statusCode: StatusCodes.Status409Conflict,
        title: "Secret changed meanwhile", detail: "Another rotation of this webhook's secret finished first; its new secret is the current one.");

    /// <summary>
    /// The answer to a rotation repeated with its <c>Idempotency-Key</c>: the secret the first one
    /// made while it is the current one (200), 409 once rotated again since, 422 when the key came with another request.
    /// </summary>
    private static async Task<Results<Ok<RotatedSecretResponse>, ValidationProblem, ProblemHttpResult>> RepeatedRotationAsync(
        IdempotencyKeys.Earlier earlier, Guid id, ApiServices services, CancellationToken cancellationToken)
    {
        if (!earlier.SameRequest || earlier.ResultHash is null)
            return TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity, title: "Idempotency-Key reused",
                detail: $"This {IdempotencyKeys.Header} was sent with another request in the last {IdempotencyKeys.Lifetime.TotalHours:0} hours; " +
                        "use a new key for a new request. Nothing was changed.",
                extensions: new Dictionary<string, object?> { ["field"] = IdempotencyKeys.Header });
        var s = await services.Owned().FirstOrDefaultAsync(x => x.Id == id, cancellationToken);
        if (s is null) return NotFound(id);
        var secret = services.Sealer.Unseal(s.Secret);
        if (!IdempotencyKeys.SecretHash(secret).AsSpan().SequenceEqual(earlier.ResultHash) || s.PreviousSecretExpiresAt is not { } expires)
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Rotated again since",
                detail: $"The secret this {IdempotencyKeys.Header} made is no longer the current one: the secret was rotated again since. Nothing was changed.");
        return TypedResults.Ok(new RotatedSecretResponse(secret, expires, SubscriptionResponse.PublicKeyOf(s.SigningKey, services.Sealer)));
    }
}
