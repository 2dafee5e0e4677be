using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>
/// The service as a deployment runs it: <c>dotnet WebhookDispatcher.dll</c> in its own process, the
/// <c>Production</c> environment, settings as environment variables (<c>Auth__Issuer</c> …), the
/// run's database, a RabbitMQ virtual host of its own and Kestrel on 127.0.0.1 (a free port).
/// </summary>
public sealed partial class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _vhost;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServiceProcess(Process process, string vhost)
    {
        _process = process;
        _vhost = vhost;
    }

    /// <summary>The RabbitMQ virtual host the process uses (made for it, removed with it).</summary>
    public string VirtualHost => _vhost;

    /// <summary>Everything the process wrote to stdout and stderr so far.</summary>
    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>
    /// Starts the service with <paramref name="settings"/> (configuration keys such as
    /// <c>Auth:Issuer</c>; an empty value is an empty environment variable) over the defaults above.
    /// </summary>
    public static async Task<ServiceProcess> StartAsync(IReadOnlyDictionary<string, string> settings)
    {
        var directory = Path.GetDirectoryName(typeof(Program).Assembly.Location)!;
        var vhost = await Broker.CreateVirtualHostAsync("process");
        var start = new ProcessStartInfo("dotnet", [Path.Combine(directory, "WebhookDispatcher.dll")])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
            ["ConnectionStrings:Postgres"] = TestInfrastructure.Postgres,
            ["ConnectionStrings:RabbitMq"] = new UriBuilder(TestInfrastructure.RabbitMq) { Path = "/" + Uri.EscapeDataString(vhost) }.Uri.ToString(),
            ["Logging:Console:FormatterName"] = "simple",
            ["Sealing:MainKey"] = TestTokens.SealingKey,
        };
        foreach (var (key, value) in settings) environment[key] = value;
        foreach (var (key, value) in environment) start.Environment[key.Replace(":", "__")] = value;

        var service = new ServiceProcess(new Process { StartInfo = start }, vhost);
        service._process.OutputDataReceived += (_, e) => service.Append(e.Data);
        service._process.ErrorDataReceived += (_, e) => service.Append(e.Data);
        service._process.Start();
        service._process.BeginOutputReadLine();
        service._process.BeginErrorReadLine();
        return service;
    }

    /// <summary>
    /// Runs a one-off command of the service (<c>dotnet WebhookDispatcher.dll topology</c>) as a
    /// release step would: the <c>Production</c> environment, the run's database and broker, and
    /// <paramref name="settings"/> over them (<c>ConnectionStrings:RabbitMq</c> names the virtual
    /// host). Returns its exit code and output.
    /// </summary>
    /// <exception cref="TimeoutException">The command did not end within <paramref name="timeout"/> (it is killed).</exception>
    public static async Task<(int ExitCode, string Output)> RunCommandAsync(IReadOnlyList<string> arguments,
        IReadOnlyDictionary<string, string> settings, TimeSpan timeout)
    {
        var directory = Path.GetDirectoryName(typeof(Program).Assembly.Location)!;
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["ConnectionStrings:Postgres"] = TestInfrastructure.Postgres,
            ["ConnectionStrings:RabbitMq"] = TestInfrastructure.RabbitMq,
            ["Logging:Console:FormatterName"] = "simple",
        };
        foreach (var (key, value) in settings) environment[key] = value;
        await using var command = ChildProcess.Start("dotnet", [Path.Combine(directory, "WebhookDispatcher.dll"), .. arguments], directory,
            environment.ToDictionary(e => e.Key.Replace(":", "__"), e => e.Value));
        if (!await command.WaitForExitAsync(timeout))
            throw new TimeoutException($"{string.Join(' ', arguments)} did not end within {timeout.TotalSeconds} s:\n{command.Output}");
        return (command.ExitCode, command.Output);
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
        if (ListeningLine().Match(line) is { Success: true } match)
            _listening.TrySetResult(new Uri(match.Groups[1].Value));
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningLine();

    /// <summary>Waits until the process ends; its exit code, or null if it still runs after <paramref name="timeout"/>.</summary>
    public async Task<int?> WaitForExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
            _process.WaitForExit(); // lets the output readers finish
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>The address the service listens on once it serves, or null if it exited or took longer than <paramref name="timeout"/>.</summary>
    public async Task<Uri?> WaitUntilServingAsync(TimeSpan timeout)
    {
        var finished = await Task.WhenAny(_listening.Task, _process.WaitForExitAsync(), Task.Delay(timeout));
        return finished == _listening.Task ? _listening.Task.Result : null;
    }

    /// <summary>Stops the process if it still runs (this process only) and removes its virtual host.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        await Broker.DeleteVirtualHostAsync(_vhost);
    }
}
