using Microsoft.Playwright;

namespace WebhookDispatcher.Tests.Portal;

/// <summary>
/// One headless Debian Chromium for the run's browser tests, driven by Playwright (its own
/// browser download cannot work here: no internet). The executable is <c>WEBHOOKS_CHROMIUM</c>,
/// else <c>/usr/bin/chromium</c> (deploy/test.sh installs it when missing); without it the tests
/// fail, they never skip.
/// </summary>
public static class Chromium
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static IPlaywright? _playwright;
    private static IBrowser? _browser;

    /// <summary>The browser executable.</summary>
    public static string Executable =>
        Environment.GetEnvironmentVariable("WEBHOOKS_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    /// <summary>The shared browser, launched on first use.</summary>
    public static async Task<IBrowser> BrowserAsync()
    {
        await Gate.WaitAsync();
        try
        {
            if (_browser is { IsConnected: true }) return _browser;
            if (!File.Exists(Executable))
                Assert.Fail($"No Chromium at {Executable}: install Debian's chromium (deploy/test.sh does) or set WEBHOOKS_CHROMIUM.");
            _playwright ??= await Playwright.CreateAsync();
            _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = Executable,
                Headless = true,
                // Root in CI has no user namespaces for the sandbox; /dev/shm may be small.
                Args = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
                Timeout = 120_000,
            });
            return _browser;
        }
        finally
        {
            Gate.Release();
        }
    }

    /// <summary>A new browser context (its own storage) with generous timeouts for a busy 2-core machine.</summary>
    public static async Task<IBrowserContext> ContextAsync()
    {
        var context = await (await BrowserAsync()).NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = 1280, Height = 860 },
            Locale = "en-GB",
            TimezoneId = "UTC",
        });
        context.SetDefaultTimeout(60_000);
        context.SetDefaultNavigationTimeout(60_000);
        // Expect(…) waits for what the page shows; its default of 5 s is a wall-clock bound a busy
        // 2-core machine can miss (a lazily read payload, a refresh behind other suites' work).
        Assertions.SetDefaultExpectTimeout(60_000);
        return context;
    }

    /// <summary>Closes the browser and the driver (end of the run).</summary>
    public static async Task CloseAsync()
    {
        if (_browser is not null) await _browser.CloseAsync();
        _playwright?.Dispose();
        (_browser, _playwright) = (null, null);
    }
}
