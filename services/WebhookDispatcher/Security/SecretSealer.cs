using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace WebhookDispatcher.Security;

/// <summary>
/// The main keys that seal secrets at rest (section <c>Sealing</c>): signing secrets, previous
/// secrets, credential header values and Ed25519 private keys (decision 0013). Each key is the
/// base64 of 32 random bytes (<c>openssl rand -base64 32</c>).
/// </summary>
public sealed class SealingOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Sealing";

    /// <summary>The key that seals new values and unseals values sealed with it. Required.</summary>
    public string? MainKey { get; set; }

    /// <summary>
    /// Earlier (or not yet current) main keys: they only unseal, never seal. A rotation adds the new
    /// key here on every replica first, then makes it <see cref="MainKey"/> (docs/operations.md).
    /// </summary>
    public List<string> OldMainKeys { get; set; } = [];

    /// <summary>
    /// Why <paramref name="oldMainKeys"/> (the configuration section <c>Sealing:OldMainKeys</c>) is
    /// not read as it is meant, or null: an entry whose index is no number (the binder would take
    /// <c>Sealing__OldMainKeys__abc</c> as the next entry, whatever the name meant), an entry that
    /// is a section of its own (<c>Sealing__OldMainKeys__0__x</c>: never read), or a value given
    /// to the list itself (the binder ignores it: the key would not be there).
    /// </summary>
    public static string? OldMainKeysProblem(IConfigurationSection oldMainKeys)
    {
        const string Form = "Sealing:OldMainKeys:0, Sealing:OldMainKeys:1 … (Sealing__OldMainKeys__0 … in the environment)";
        if (!string.IsNullOrWhiteSpace(oldMainKeys.Value))
            return $"Sealing:OldMainKeys is a list: give each old main key as {Form}; a value given to Sealing:OldMainKeys itself is not read.";
        foreach (var entry in oldMainKeys.GetChildren())
        {
            if (!(entry.Key.Length is > 0 and <= 9 && entry.Key.All(char.IsAsciiDigit)))
                return $"Sealing:OldMainKeys:{entry.Key}: the index of an old main key must be a number: {Form}.";
            if (entry.GetChildren().FirstOrDefault() is { } nested)
                return $"Sealing:OldMainKeys:{entry.Key}:{nested.Key}: an old main key is one value (the base64 of 32 bytes), not a section: {Form}.";
        }
        return null;
    }

    /// <inheritdoc />
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(MainKey))
            yield return new ValidationResult(
                "Sealing:MainKey is required: the base64 of 32 random bytes (openssl rand -base64 32) that seals signing secrets, " +
                "credential headers and private keys in the database. Use the key the database was sealed with.", [nameof(MainKey)]);
        else if (SecretSealer.DecodeKey(MainKey) is null)
            yield return new ValidationResult("Sealing:MainKey must be the base64 of exactly 32 bytes (openssl rand -base64 32).", [nameof(MainKey)]);
        for (var i = 0; i < OldMainKeys.Count; i++)
            // An empty entry is how an environment variable clears one: ignored.
            if (!string.IsNullOrWhiteSpace(OldMainKeys[i]) && SecretSealer.DecodeKey(OldMainKeys[i]) is null)
                yield return new ValidationResult($"Sealing:OldMainKeys:{i} must be the base64 of exactly 32 bytes.", [nameof(OldMainKeys)]);
    }
}

/// <summary>
/// Seals and unseals secrets at rest with AES-256-GCM under a main key from the settings. A sealed
/// value reads <c>sealed:v1:&lt;key id&gt;:&lt;base64 of nonce (12 bytes), ciphertext, tag (16 bytes)&gt;</c>:
/// the key id (8 hex digits derived from the key) picks the key that opens it, so values sealed
/// with an old key keep opening while <see cref="SealingOptions.OldMainKeys"/> lists it. A value
/// without the <see cref="Prefix"/> is plain text from before sealing and is returned as it is
/// (<see cref="SealingStartup"/> seals such rows). Unsealed values are cached by sealed value:
/// a delivery's claim costs a dictionary lookup, not a decryption.
/// </summary>
public sealed class SecretSealer
{
    /// <summary>What every sealed value starts with.</summary>
    public const string Prefix = "sealed:v1:";

    /// <summary>Bytes of a main key.</summary>
    public const int KeyBytes = 32;

    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private const int MaxCached = 100_000;
    private static readonly byte[] AssociatedData = "webhook-dispatcher sealed secret v1"u8.ToArray();

    private readonly byte[] _currentKey;
    private readonly Dictionary<string, byte[]> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _opened = new(StringComparer.Ordinal);

    /// <summary>Creates the sealer from validated options.</summary>
    /// <exception cref="OptionsValidationException">The options are invalid (missing or malformed key).</exception>
    public SecretSealer(IOptions<SealingOptions> options)
    {
        var o = options.Value;
        _currentKey = DecodeKey(o.MainKey) ?? throw new OptionsValidationException(SealingOptions.Section, typeof(SealingOptions),
            ["Sealing:MainKey is required: the base64 of 32 random bytes (openssl rand -base64 32)."]);
        CurrentKeyId = KeyId(_currentKey);
        _keys[CurrentKeyId] = _currentKey;
        foreach (var old in o.OldMainKeys)
            if (DecodeKey(old) is { } key) _keys.TryAdd(KeyId(key), key);
    }

    /// <summary>The id of <see cref="SealingOptions.MainKey"/>, as written in the values it seals.</summary>
    public string CurrentKeyId { get; }

    /// <summary>The ids of every configured key (current first).</summary>
    public IReadOnlyCollection<string> KeyIds => _keys.Keys;

    /// <summary>Whether <paramref name="stored"/> is a sealed value (of any key).</summary>
    public static bool IsSealed(string? stored) => stored is not null && stored.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>The key id a sealed value names; null for plain text.</summary>
    public static string? KeyIdOf(string stored) =>
        IsSealed(stored) && stored.IndexOf(':', Prefix.Length) is var end and > 0 ? stored[Prefix.Length..end] : null;

    /// <summary>Seals <paramref name="plaintext"/> with the current main key (a fresh random nonce each time).</summary>
    public string Seal(string plaintext)
    {
        var data = Encoding.UTF8.GetBytes(plaintext);
        var output = new byte[NonceBytes + data.Length + TagBytes];
        var nonce = output.AsSpan(0, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using (var aes = new AesGcm(_currentKey, TagBytes))
            aes.Encrypt(nonce, data, output.AsSpan(NonceBytes, data.Length), output.AsSpan(NonceBytes + data.Length), AssociatedData);
        var sealedValue = Prefix + CurrentKeyId + ":" + Convert.ToBase64String(output);
        Remember(sealedValue, plaintext);
        return sealedValue;
    }

    /// <summary>Seals <paramref name="plaintext"/> unless null.</summary>
    public string? SealOrNull(string? plaintext) => plaintext is null ? null : Seal(plaintext);

    /// <summary>The plain text of a stored value: a sealed one opened, plain text (from before sealing) as it is.</summary>
    /// <exception cref="CryptographicException">
    /// The value names a main key that is not configured, or the key does not open it (a wrong key, or a changed value).
    /// </exception>
    public string Unseal(string stored)
    {
        if (!IsSealed(stored)) return stored;
        if (_opened.TryGetValue(stored, out var cached)) return cached;
        var keyId = KeyIdOf(stored) ?? throw new CryptographicException("A sealed value without a key id.");
        if (!_keys.TryGetValue(keyId, out var key))
            throw new CryptographicException(
                $"A value is sealed with main key {keyId}, which is neither Sealing:MainKey ({CurrentKeyId}) nor one of Sealing:OldMainKeys.");
        var bytes = Convert.FromBase64String(stored[(Prefix.Length + keyId.Length + 1)..]);
        if (bytes.Length < NonceBytes + TagBytes) throw new CryptographicException("A sealed value too short to hold its nonce and tag.");
        var plain = new byte[bytes.Length - NonceBytes - TagBytes];
        using (var aes = new AesGcm(key, TagBytes))
            aes.Decrypt(bytes.AsSpan(0, NonceBytes), bytes.AsSpan(NonceBytes, plain.Length), bytes.AsSpan(NonceBytes + plain.Length), plain, AssociatedData);
        var text = Encoding.UTF8.GetString(plain);
        Remember(stored, text);
        return text;
    }

    /// <summary>Unseals <paramref name="stored"/> unless null.</summary>
    /// <exception cref="CryptographicException">See <see cref="Unseal"/>.</exception>
    public string? UnsealOrNull(string? stored) => stored is null ? null : Unseal(stored);

    /// <summary>Whether <paramref name="stored"/> must be sealed (again) with the current key: plain text, or sealed with another key.</summary>
    public bool NeedsSealing(string? stored) => stored is not null && KeyIdOf(stored) != CurrentKeyId;

    /// <summary>The key bytes of a base64 main key; null unless it decodes to exactly <see cref="KeyBytes"/> bytes.</summary>
    public static byte[]? DecodeKey(string? base64)
    {
        if (string.IsNullOrWhiteSpace(base64)) return null;
        var buffer = new byte[KeyBytes + 3];
        return Convert.TryFromBase64String(base64.Trim(), buffer, out var written) && written == KeyBytes ? buffer[..KeyBytes] : null;
    }

    /// <summary>The id of a key: 8 hex digits of SHA-256 over a label and the key (it names the key, and says nothing useful about it).</summary>
    public static string KeyId(byte[] key) =>
        Convert.ToHexStringLower(SHA256.HashData([.. "webhook-dispatcher main key id:"u8, .. key]))[..8];

    private void Remember(string sealedValue, string plaintext)
    {
        // Rotations and edits leave stale entries behind: start over rather than grow without end.
        if (_opened.Count >= MaxCached) _opened.Clear();
        _opened[sealedValue] = plaintext;
    }
}
