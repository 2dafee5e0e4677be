namespace WebhookDispatcher.Tests.Infrastructure;

/// <summary>Paths in the repository the tests run from.</summary>
public static class Repo
{
    /// <summary>The repository root: the nearest folder above the test binaries holding WebhookDispatcher.sln.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The Python interpreter for the examples: <c>WEBHOOKS_PYTHON</c> (deploy/test.sh sets Debian's, which has pika), else <c>python3</c>.</summary>
    public static string Python => Environment.GetEnvironmentVariable("WEBHOOKS_PYTHON") is { Length: > 0 } python ? python : "python3";

    /// <summary>A path under the root, from '/'-separated parts.</summary>
    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "WebhookDispatcher.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No WebhookDispatcher.sln above {AppContext.BaseDirectory}.");
    }
}
