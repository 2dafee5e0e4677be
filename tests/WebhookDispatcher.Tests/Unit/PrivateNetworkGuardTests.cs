using System.Net;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Tests.Unit;

public sealed class PrivateNetworkGuardTests
{
    [TestCase("127.0.0.1")]
    [TestCase("10.1.2.3")]
    [TestCase("172.16.0.1")]
    [TestCase("172.31.255.255")]
    [TestCase("192.168.1.1")]
    [TestCase("169.254.169.254")]
    [TestCase("100.64.0.1")]
    [TestCase("0.0.0.0")]
    [TestCase("224.0.0.1")]
    [TestCase("255.255.255.255")]
    [TestCase("::1")]
    [TestCase("::")]
    [TestCase("fe80::1")]
    [TestCase("fd00::1")]
    [TestCase("::ffff:10.0.0.1")]
    [TestCase("64:ff9b::a00:1")]
    [TestCase("::127.0.0.1")]
    [TestCase("2002:7f00:1::")]
    [TestCase("2002:c0a8:101::1")]
    [TestCase("2001:0:4136:e378::1")]
    [TestCase("2001:db8::1")]
    [TestCase("ff02::1")]
    [TestCase("2001:2::1")]
    [TestCase("2001:10::1")]
    [TestCase("2001:20::1")]
    [TestCase("3fff::1")]
    public void Non_public_addresses_are_refused(string address) =>
        Assert.That(PrivateNetworkGuard.IsNonPublic(IPAddress.Parse(address)), Is.True);

    [TestCase("93.184.215.14")]
    [TestCase("172.32.0.1")]
    [TestCase("8.8.8.8")]
    [TestCase("2606:4700::1111")]
    [TestCase("2002:808:808::1")]
    [TestCase("2001:200::1")]
    [TestCase("2001:4860:4860::8888")]
    public void Public_addresses_are_allowed(string address) =>
        Assert.That(PrivateNetworkGuard.IsNonPublic(IPAddress.Parse(address)), Is.False);
}
