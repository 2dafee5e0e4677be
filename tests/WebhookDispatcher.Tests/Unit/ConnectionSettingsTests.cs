using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using Npgsql;
using WebhookDispatcher.Data;
using WebhookDispatcher.Messaging;
using WebhookDispatcher.Observability;

namespace WebhookDispatcher.Tests.Unit;

/// <summary>The connection settings of a cluster: several RabbitMQ nodes in one URI, several PostgreSQL hosts.</summary>
public sealed class ConnectionSettingsTests
{
    [Test]
    public void A_broker_uri_with_one_host_reads_as_before()
    {
        var broker = BrokerAddress.Parse("amqp://guest:p%40ss@127.0.0.1:55672/webhooks%2Dtests");
        Assert.Multiple(() =>
        {
            Assert.That(broker.NodeAddresses, Is.EqualTo(new[] { "127.0.0.1:55672" }));
            Assert.That(broker.IsCluster, Is.False);
            Assert.That((broker.UserName, broker.Password, broker.VirtualHost), Is.EqualTo(("guest", "p@ss", "webhooks-tests")));
        });
    }

    [Test]
    public void A_broker_uri_lists_the_nodes_of_a_cluster_separated_by_commas()
    {
        var broker = BrokerAddress.Parse("amqp://user:secret@10.0.0.1:5673,rabbit-2,[::1]:5674/");
        Assert.Multiple(() =>
        {
            Assert.That(broker.NodeAddresses, Is.EqualTo(new[] { "10.0.0.1:5673", "rabbit-2:5672", "[::1]:5674" }));
            Assert.That(broker.IsCluster, Is.True);
            Assert.That((broker.UserName, broker.Password, broker.VirtualHost), Is.EqualTo(("user", "secret", "/")));
            Assert.That(broker.ToString(), Is.EqualTo("10.0.0.1:5673, rabbit-2:5672, [::1]:5674 (virtual host /)"));
            Assert.That(broker.Endpoints.Select(e => (e.HostName, e.Port)), Is.EqualTo(new[] { ("10.0.0.1", 5673), ("rabbit-2", 5672), ("::1", 5674) }));
        });
    }

    [TestCase("http://127.0.0.1:5672/")]
    [TestCase("amqp://guest:guest@/")]
    [TestCase("amqp://guest:guest@h1:5672,,h2/")]
    [TestCase("amqp://guest:guest@h1:99999/")]
    [TestCase("amqp://guest:guest@h1:port/")]
    public void A_malformed_broker_uri_stops_start_up_with_a_message_that_hides_the_password(string uri)
    {
        var error = Assert.Throws<InvalidOperationException>(() => BrokerAddress.Parse(uri))!;
        Assert.That(error.Message, Does.StartWith("ConnectionStrings:RabbitMq").And.Not.Contain("guest:guest"));
    }

    [Test]
    public void Several_postgres_hosts_get_the_primary_and_a_one_second_recheck_unless_the_string_says_otherwise()
    {
        const string twoHosts = "Host=127.0.0.1:5432,127.0.0.1:5433;Database=webhooks;Username=webhooks";
        var defaults = new NpgsqlConnectionStringBuilder(twoHosts);
        PostgresHosts.ApplyFailoverDefaults(defaults, twoHosts);
        var givenText = twoHosts + ";target session attributes=prefer-primary;HostRecheckSeconds=5";
        var given = new NpgsqlConnectionStringBuilder(givenText);
        PostgresHosts.ApplyFailoverDefaults(given, givenText);
        const string oneHost = "Host=127.0.0.1;Port=5432;Database=webhooks";
        var single = new NpgsqlConnectionStringBuilder(oneHost);
        PostgresHosts.ApplyFailoverDefaults(single, oneHost);
        Assert.Multiple(() =>
        {
            Assert.That(PostgresHosts.Of(twoHosts), Is.EqualTo(new[] { "127.0.0.1:5432", "127.0.0.1:5433" }));
            Assert.That((defaults.TargetSessionAttributes, defaults.HostRecheckSeconds), Is.EqualTo(("primary", 1)));
            Assert.That((given.TargetSessionAttributes, given.HostRecheckSeconds), Is.EqualTo(("prefer-primary", 5)));
            Assert.That((single.TargetSessionAttributes, single.HostRecheckSeconds), Is.EqualTo(((string?)null, 10)), "one host: Npgsql's defaults");
        });
    }

    [Test]
    public void The_service_s_postgres_defaults_bound_a_hung_server_s_waits_unless_the_string_says_otherwise()
    {
        const string plain = "Host=127.0.0.1;Port=5432;Database=webhooks;Username=webhooks";
        var defaults = new NpgsqlConnectionStringBuilder(plain);
        DataExtensions.ApplyDefaults(defaults, plain);
        const string givenText = plain + ";Timeout=12;GSS Encryption Mode=Require";
        var given = new NpgsqlConnectionStringBuilder(givenText);
        DataExtensions.ApplyDefaults(given, givenText);
        Assert.Multiple(() =>
        {
            // PGGSSENCMODE in the environment would count as given; the test machines set none.
            Assert.That((defaults.Timeout, defaults.GssEncryptionMode), Is.EqualTo((5, GssEncryptionMode.Disable)),
                "a cancel request waits for one startup answer of at most 5 s");
            Assert.That((given.Timeout, given.GssEncryptionMode), Is.EqualTo((12, GssEncryptionMode.Require)));
            Assert.That((defaults.NoResetOnClose, defaults.MaxAutoPrepare), Is.EqualTo((true, 64)));
        });
    }

    [Test]
    public async Task The_probes_data_source_opens_without_GSS_encryption_unless_the_string_says_otherwise()
    {
        const string plain = "Host=127.0.0.1;Port=5432;Database=webhooks;Username=webhooks";
        var health = Options.Create(new HealthOptions());
        static IConfiguration Config(string connectionString) =>
            new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = connectionString }).Build();
        await using var defaults = new MonitoringDatabase(Config(plain), health);
        await using var given = new MonitoringDatabase(Config(plain + ";GSS Encryption Mode=Require"), health);
        Assert.Multiple(() =>
        {
            // PGGSSENCMODE in the environment would count as given; the test machines set none.
            Assert.That(new NpgsqlConnectionStringBuilder(defaults.DataSource.ConnectionString).GssEncryptionMode, Is.EqualTo(GssEncryptionMode.Disable),
                "a probe of a hung server waits for one startup answer, not two");
            Assert.That(new NpgsqlConnectionStringBuilder(given.DataSource.ConnectionString).GssEncryptionMode, Is.EqualTo(GssEncryptionMode.Require));
            Assert.That(new NpgsqlConnectionStringBuilder(defaults.DataSource.ConnectionString).Timeout, Is.EqualTo(3), "the probe's own timeout");
        });
    }
}
