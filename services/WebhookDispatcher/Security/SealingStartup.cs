using System.Security.Cryptography;
using Npgsql;
using WebhookDispatcher.Subscriptions;

namespace WebhookDispatcher.Security;

/// <summary>
/// At start, before anything signs: checks that the configured main keys open every sealed value
/// in <c>webhook_subscriptions</c> (a missing or wrong key stops the service with a message saying
/// which key id the data needs), then seals what is not sealed with the current key yet: plain
/// text from before sealing, and values sealed with a key now in <see cref="SealingOptions.OldMainKeys"/>
/// (the last step of a main key rotation). Each row is rewritten only if it is still as read, so
/// replicas starting together, rotations and edits at the same moment lose nothing. When the
/// database cannot be reached (or is not migrated yet), the service starts and the check runs
/// again every <see cref="RetryInterval"/> until it can; a key problem found then stops the service.
/// </summary>
public sealed class SealingStartup(NpgsqlDataSource db, SecretSealer sealer, IHostApplicationLifetime lifetime, ILogger<SealingStartup> logger)
    : IHostedService
{
    /// <summary>How often the check is tried again while the database is away.</summary>
    public static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(5);

    /// <summary>Rows rewritten per statement batch.</summary>
    public const int BatchSize = 500;

    // Never disposed: it has no timer, and the host may stop a service after disposing the container.
    private readonly CancellationTokenSource _stopping = new();
    private Task? _retry;

    /// <inheritdoc />
    /// <exception cref="StartupRefusedException">A sealed value that no configured main key opens.</exception>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await RunAsync(cancellationToken);
        }
        catch (Exception ex) when (IsDatabaseAway(ex))
        {
            logger.LogWarning("Sealed secrets not checked yet, the database is not ready ({Reason}); trying again every {Seconds} s.",
                ex.Message, RetryInterval.TotalSeconds);
            _retry = RetryAsync(_stopping.Token);
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_retry is not null) await _retry.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>The check, then the sealing of every value not sealed with the current key. Returns the rows rewritten.</summary>
    /// <exception cref="StartupRefusedException">A sealed value that no configured main key opens.</exception>
    /// <exception cref="NpgsqlException">The database failed.</exception>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        await CheckKeysAsync(cancellationToken);
        var rewritten = 0;
        // Bounded: a row changed between read and write is read again, but never forever.
        for (var pass = 0; pass < 10_000; pass++)
        {
            var rows = await ReadUnsealedAsync(cancellationToken);
            if (rows.Count == 0) break;
            var written = await RewriteAsync(rows, cancellationToken);
            rewritten += written;
            if (written == 0 && rows.Count < BatchSize) break;
        }
        if (rewritten > 0)
            logger.LogInformation("Sealed the secrets of {Rows} subscriptions with main key {KeyId}.", rewritten, sealer.CurrentKeyId);
        return rewritten;
    }

    private async Task RetryAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(RetryInterval, stopping);
                await RunAsync(stopping);
                return;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (IsDatabaseAway(ex))
            {
                // Still away: next round.
            }
            catch (StartupRefusedException ex)
            {
                logger.LogCritical("{Message} Stopping.", ex.Message);
                Environment.ExitCode = 1;
                lifetime.StopApplication();
                return;
            }
        }
    }

    private static bool IsDatabaseAway(Exception ex) =>
        ex is NpgsqlException and not PostgresException
        || ex is PostgresException { SqlState: PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedColumn }
        || ex is PostgresException p && Data.DatabaseAvailability.TransientSqlStates.Contains(p.SqlState);

    /// <summary>One sealed value per key id in use; each must open with a configured key.</summary>
    private async Task CheckKeysAsync(CancellationToken cancellationToken)
    {
        await using var cmd = db.CreateCommand("""
            SELECT split_part(v, ':', 3) AS key_id, min(v), count(*)
            FROM (SELECT x.v FROM webhook_subscriptions s,
                         LATERAL (VALUES (s.secret), (s.previous_secret), (s.signing_key), (s.previous_signing_key)) AS x(v)
                  WHERE x.v LIKE 'sealed:v1:%'
                  UNION ALL
                  SELECT h.value FROM webhook_subscriptions s, json_each_text(s.headers) AS h
                  WHERE h.value LIKE 'sealed:v1:%' AND h.key ~* $1) AS sealed(v)
            GROUP BY 1
            """);
        // Only credential headers' values are sealed by the service (SubscriptionHeaders.ToStored).
        cmd.Parameters.Add(new() { Value = "(" + string.Join("|", SubscriptionHeaders.CredentialNameParts) + ")" });
        var problems = new List<string>();
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken))
            {
                var (keyId, sample, count) = (reader.GetString(0), reader.GetString(1), reader.GetInt64(2));
                try
                {
                    sealer.Unseal(sample);
                }
                catch (Exception ex) when (ex is CryptographicException or FormatException)
                {
                    problems.Add(sealer.KeyIds.Contains(keyId)
                        ? $"{count} values are sealed with main key id {keyId}, but the configured key with that id does not open them"
                        : $"{count} values are sealed with main key id {keyId}, which is not configured");
                }
            }
        if (problems.Count > 0)
            throw new StartupRefusedException(
                $"Sealing: the configured main keys cannot open the secrets in the database: {string.Join("; ", problems)}. " +
                $"Sealing:MainKey has id {sealer.CurrentKeyId}; the configured ids are {string.Join(", ", sealer.KeyIds)}. " +
                "Start with the key that sealed them (as Sealing:MainKey or in Sealing:OldMainKeys); see docs/operations.md, \"The main key\".");
    }

    private sealed record Row(Guid Id, string Secret, string? PreviousSecret, string? SigningKey, string? PreviousSigningKey, string? Headers);

    private async Task<List<Row>> ReadUnsealedAsync(CancellationToken cancellationToken)
    {
        var credential = "(" + string.Join("|", SubscriptionHeaders.CredentialNameParts) + ")";
        await using var cmd = db.CreateCommand("""
            SELECT id, secret, previous_secret, signing_key, previous_signing_key, headers::text FROM webhook_subscriptions
            WHERE secret NOT LIKE $1 OR previous_secret NOT LIKE $1 OR signing_key NOT LIKE $1 OR previous_signing_key NOT LIKE $1
               OR EXISTS (SELECT 1 FROM json_each_text(headers) AS h WHERE h.value NOT LIKE $1 AND h.key ~* $2)
            LIMIT $3
            """);
        cmd.Parameters.Add(new() { Value = SecretSealer.Prefix + sealer.CurrentKeyId + ":%" });
        cmd.Parameters.Add(new() { Value = credential });
        cmd.Parameters.Add(new() { Value = BatchSize });
        var rows = new List<Row>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(new Row(reader.GetGuid(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4),
                reader.IsDBNull(5) ? null : reader.GetString(5)));
        return rows;
    }

    private async Task<int> RewriteAsync(List<Row> rows, CancellationToken cancellationToken)
    {
        await using var batch = db.CreateBatch();
        foreach (var row in rows)
        {
            var command = new NpgsqlBatchCommand("""
                UPDATE webhook_subscriptions SET secret = $2, previous_secret = $3, signing_key = $4, previous_signing_key = $5, headers = $6::json
                WHERE id = $1 AND secret = $7 AND previous_secret IS NOT DISTINCT FROM $8 AND signing_key IS NOT DISTINCT FROM $9
                  AND previous_signing_key IS NOT DISTINCT FROM $10 AND headers::text IS NOT DISTINCT FROM $11
                """);
            command.Parameters.Add(new() { Value = row.Id });
            command.Parameters.Add(new() { Value = Reseal(row.Secret) });
            command.Parameters.Add(new() { Value = (object?)ResealOrNull(row.PreviousSecret) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)ResealOrNull(row.SigningKey) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)ResealOrNull(row.PreviousSigningKey) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)ResealHeaders(row.Headers) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            command.Parameters.Add(new() { Value = row.Secret });
            command.Parameters.Add(new() { Value = (object?)row.PreviousSecret ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)row.SigningKey ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)row.PreviousSigningKey ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Varchar });
            command.Parameters.Add(new() { Value = (object?)row.Headers ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            batch.BatchCommands.Add(command);
        }
        return await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    private string Reseal(string stored) => sealer.NeedsSealing(stored) ? sealer.Seal(sealer.Unseal(stored)) : stored;

    private string? ResealOrNull(string? stored) => stored is null ? null : Reseal(stored);

    private string? ResealHeaders(string? stored)
    {
        if (stored is null) return null;
        var opened = SubscriptionHeaders.Open(stored, sealer);
        // Sealed again whatever key sealed them: the stored text is rebuilt as a whole.
        return SubscriptionHeaders.ToStored(opened, sealer);
    }
}

/// <summary>Registers the sealing of secrets at rest.</summary>
public static class SealingExtensions
{
    /// <summary>
    /// Adds <see cref="SealingOptions"/> (validated at start: a missing or malformed key stops the
    /// service), <see cref="SecretSealer"/>, the attempt's <see cref="Deliveries.SubscriptionSigner"/>
    /// and <see cref="SealingStartup"/> (after the migrations, before the bus).
    /// </summary>
    /// <exception cref="StartupRefusedException"><c>Sealing:OldMainKeys</c> is not a list with numbered entries (<see cref="SealingOptions.OldMainKeysProblem"/>).</exception>
    public static IHostApplicationBuilder AddSealing(this IHostApplicationBuilder builder)
    {
        if (SealingOptions.OldMainKeysProblem(builder.Configuration.GetSection($"{SealingOptions.Section}:{nameof(SealingOptions.OldMainKeys)}")) is { } problem)
            throw new StartupRefusedException(problem);
        builder.Services.AddOptions<SealingOptions>().BindConfiguration(SealingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<SecretSealer>();
        builder.Services.AddSingleton<Deliveries.SubscriptionSigner>();
        builder.Services.AddSingleton<SealingStartup>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SealingStartup>());
        return builder;
    }
}
