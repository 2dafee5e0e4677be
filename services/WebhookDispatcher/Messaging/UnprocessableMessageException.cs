namespace WebhookDispatcher.Messaging;

/// <summary>
/// A message that can never be processed, however often it is tried (a publisher's mistake, such
/// as an event over the payload cap). A consumer throws it; the endpoint parks the message in its
/// <c>_error</c> queue at once, with <see cref="Exception.Message"/> as the <c>MT-Fault-Message</c>
/// header, and never redelivers it (<see cref="MessagingExtensions.UseDispatcherDefaults"/>).
/// </summary>
/// <remarks>
/// MassTransit writes the message of the innermost exception into <c>MT-Fault-Message</c>, so the
/// reason must be this exception's own message: never pass an inner exception that says less.
/// </remarks>
public class UnprocessableMessageException(string reason) : Exception(reason);
