using MassTransit;
using MassTransit.RetryPolicies;
using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Messaging.BrokerDelay;

/// <summary>
/// The redelivery policy of the dispatcher's endpoints. A <see cref="DeliveryRetryScheduledException"/>
/// carries its own delay (the delivery consumer decided it from the attempt number and Retry-After,
/// and also decides when to stop); any other handled exception (database or broker trouble) is
/// redelivered after 2^n seconds (n = redelivery number, capped at 3600 s) at most
/// <paramref name="transientLimit"/> times, then the message goes to the endpoint's <c>_error</c> queue.
/// </summary>
/// <param name="filter">Which exceptions are handled.</param>
/// <param name="transientLimit">Redeliveries for exceptions other than <see cref="DeliveryRetryScheduledException"/> (0 or more).</param>
public sealed class WebhookRedeliveryPolicy(IExceptionFilter filter, int transientLimit) : IRetryPolicy
{
    /// <inheritdoc />
    public void Probe(ProbeContext context) => context.Set(new { Policy = "Webhook", TransientLimit = transientLimit });

    /// <inheritdoc />
    public RetryPolicyContext<T> CreatePolicyContext<T>(T context) where T : class, PipeContext => new PolicyContext<T>(this, context);

    /// <inheritdoc />
    public bool IsHandled(Exception exception) => filter.Match(exception);

    internal TimeSpan DelayFor(Exception exception, int retryCount) => exception is DeliveryRetryScheduledException scheduled
        ? scheduled.Delay
        : RetrySchedule.DelayAfter(retryCount + 1);

    internal bool CanRetry(Exception exception, int retryAttempt) =>
        IsHandled(exception) && (exception is DeliveryRetryScheduledException || retryAttempt < transientLimit);

    private sealed class PolicyContext<T>(WebhookRedeliveryPolicy policy, T context) : BaseRetryPolicyContext<T>(policy, context)
        where T : class, PipeContext
    {
        protected override RetryContext<T> CreateRetryContext(Exception exception, CancellationToken cancellationToken) =>
            new Attempt<T>(policy, Context, exception, 0, cancellationToken);
    }

    private sealed class Attempt<T>(WebhookRedeliveryPolicy policy, T context, Exception exception, int retryCount, CancellationToken cancellationToken)
        : BaseRetryContext<T>(context, exception, retryCount, cancellationToken), RetryContext<T>
        where T : class, PipeContext
    {
        public override TimeSpan? Delay => policy.DelayFor(Exception, RetryCount);

        public bool CanRetry(Exception next, out RetryContext<T> retryContext)
        {
            retryContext = new Attempt<T>(policy, Context, next, RetryCount + 1, CancellationToken);
            return policy.CanRetry(next, RetryAttempt);
        }
    }
}
