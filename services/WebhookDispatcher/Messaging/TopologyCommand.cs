using MassTransit;
using WebhookDispatcher.Messaging.BrokerDelay;

namespace WebhookDispatcher.Messaging;

/// <summary>Settings of the bus (section <c>Messaging</c>).</summary>
public sealed class MessagingOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Messaging";

    /// <summary>The full key of <see cref="DeployTopologyOnly"/>, which the <c>topology</c> command sets.</summary>
    public const string DeployTopologyOnlyKey = Section + ":" + nameof(DeployTopologyOnly);

    /// <summary>
    /// Build the bus to declare its exchanges, queues and bindings and consume nothing
    /// (MassTransit's <c>DeployTopologyOnly</c>); the workers' endpoints are configured whatever
    /// <c>Dispatcher:Workers</c> says. Set by the <c>topology</c> command; default false.
    /// </summary>
    public bool DeployTopologyOnly { get; set; }

    /// <summary>Whether <paramref name="configuration"/> asks for a topology-only bus.</summary>
    public static bool DeployTopologyOnlyIn(IConfiguration configuration) => configuration.GetValue<bool>(DeployTopologyOnlyKey);
}

/// <summary>
/// The <c>topology</c> command, as <c>migrate</c> is for the schema: declares on RabbitMQ every
/// exchange, queue and binding the workers use, so events published before the first dispatcher
/// starts are kept, then returns.
/// </summary>
public static class TopologyCommand
{
    /// <summary>The command's name on the command line.</summary>
    public const string Name = "topology";

    /// <summary>How long the bus may take to declare its endpoints before the command gives up.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Declares the delay exchanges and queues of every endpoint (<see cref="RabbitMqTopology"/>),
    /// then starts and stops the bus built with <see cref="MessagingOptions.DeployTopologyOnly"/>:
    /// its receive endpoints declare their queues, the event exchanges and their bindings without
    /// consuming. Writes what it did, or why it failed, to <paramref name="output"/> and
    /// <paramref name="error"/>.
    /// </summary>
    /// <returns>The process exit code: 0 when everything is declared, 1 when the broker cannot be
    /// reached or refused a declaration.</returns>
    public static async Task<int> DeployTopologyAsync(this IServiceProvider services, TextWriter output, TextWriter error)
    {
        var configuration = services.GetRequiredService<IConfiguration>();
        if (!MessagingOptions.DeployTopologyOnlyIn(configuration))
            throw new InvalidOperationException($"Set {MessagingOptions.DeployTopologyOnlyKey} before building the host for the topology command.");
        var broker = BrokerAddress.FromConfiguration(configuration).ToString();
        // Building the bus configures the receive endpoints, which note their delay levels.
        var bus = services.GetRequiredService<IBusControl>();
        using var timeout = new CancellationTokenSource(Patience);
        IReadOnlyList<string> delays;
        try
        {
            delays = await services.GetRequiredService<RabbitMqTopology>().DeclareAllDelaysAsync(timeout.Token);
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"topology: could not declare the delay queues on RabbitMQ at {broker} (is it running, and are the credentials and virtual host right?): {Reasons(ex)}");
            return 1;
        }
        try
        {
            await bus.DeployAsync(timeout.Token);
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"topology: could not declare the receive endpoints on RabbitMQ at {broker} within {Patience.TotalSeconds} s: {Reasons(ex)}");
            return 1;
        }
        await output.WriteLineAsync($"topology: declared on RabbitMQ at {broker}: the receive endpoints with their exchanges and bindings, " +
                                    $"and {delays.Count} delay queues ({string.Join(", ", delays)})");
        return 0;
    }

    /// <summary>
    /// Stops a host started with <see cref="MessagingOptions.DeployTopologyOnly"/> on (the setting
    /// left in a service's configuration): its bus would consume nothing while it looked healthy.
    /// The command itself never starts the host.
    /// </summary>
    internal sealed class RefuseToServe : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => throw new InvalidOperationException(
            $"{MessagingOptions.DeployTopologyOnlyKey} is on: it is for the '{Name}' command only; a service started with it would consume nothing.");

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>The exception's message and those of its inner exceptions (the broker's reason is usually innermost).</summary>
    private static string Reasons(Exception ex)
    {
        var reasons = new List<string>();
        for (var e = ex; e is not null; e = e.InnerException)
            if (!reasons.Contains(e.Message)) reasons.Add(e.Message);
        return string.Join(" -> ", reasons);
    }
}
