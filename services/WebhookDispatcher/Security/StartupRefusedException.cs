namespace WebhookDispatcher.Security;

/// <summary>
/// The service cannot start with its settings and what is stored (for example main keys that do
/// not open the sealed secrets): <c>Program</c> prints the message without a stack trace and exits
/// with code 1, as it does for settings that fail their validation.
/// </summary>
/// <param name="message">What is wrong and how to fix it.</param>
public sealed class StartupRefusedException(string message) : Exception(message);
