using WebhookDispatcher.Messaging;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>
/// The bound on the service's own sends (<see cref="MessagingExtensions.SendConfirmedAsync"/>): a send
/// that is never confirmed is cancelled itself, not only abandoned, since only a cancelled or failed
/// send makes MassTransit dispose its channel and stop retrying it in the background.
/// </summary>
public sealed class ConfirmTimeoutTests
{
    [Test]
    public async Task A_send_never_confirmed_is_cancelled_at_the_confirm_timeout_and_reported_as_a_timeout()
    {
        var sendToken = new TaskCompletionSource<CancellationToken>();
        var send = MessagingExtensions.SendConfirmedAsync(async ct =>
        {
            sendToken.SetResult(ct);
            await Task.Delay(Timeout.Infinite, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(5)); // ignores its token, like a lost confirm
        }, CancellationToken.None);

        var token = await sendToken.Task;
        Assert.That(token.IsCancellationRequested, Is.False, "control: not cancelled when it starts");
        var thrown = Assert.ThrowsAsync<TimeoutException>(async () => await send);
        Assert.Multiple(() =>
        {
            Assert.That(token.IsCancellationRequested, Is.True, "the send itself was cancelled");
            Assert.That(thrown!.Message, Does.Contain("10 s"));
        });
    }

    [Test]
    public void A_send_cancelled_by_its_caller_is_a_cancellation_not_a_timeout()
    {
        using var stop = new CancellationTokenSource();
        var send = MessagingExtensions.SendConfirmedAsync(ct => Task.Delay(Timeout.Infinite, ct), stop.Token);
        stop.Cancel();
        Assert.That(async () => await send, Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task A_confirmed_send_returns_and_its_failure_is_its_own()
    {
        await MessagingExtensions.SendConfirmedAsync(_ => Task.CompletedTask, CancellationToken.None);
        Assert.That(async () => await MessagingExtensions.SendConfirmedAsync(_ => Task.FromException(new InvalidOperationException("nacked")), CancellationToken.None),
            Throws.InstanceOf<InvalidOperationException>().With.Message.EqualTo("nacked"));
    }
}
