using WebhookDispatcher.Deliveries;

namespace WebhookDispatcher.Tests.Unit;

public sealed class DestinationLimitsTests
{
    [Test]
    public void Room_is_the_cap_less_what_is_in_flight_and_an_entry_ends_with_its_last_attempt()
    {
        var limits = new DestinationLimits();
        limits.Add("a", 2);
        Assert.Multiple(() =>
        {
            Assert.That(limits.Room("a", 3), Is.EqualTo(1));
            Assert.That(limits.Room("b", 3), Is.EqualTo(3), "another destination is not held");
        });
        limits.Add("a", 2);
        Assert.That(limits.Room("a", 3), Is.Zero, "never negative");
        for (var i = 0; i < 4; i++) limits.Release("a");
        Assert.That((limits.Room("a", 3), limits.Count), Is.EqualTo((3, 0)));
    }

    [Test]
    public void A_destination_is_one_users_host_and_port_whatever_the_path_or_case()
    {
        Assert.Multiple(() =>
        {
            Assert.That(EndpointLane.DestinationKey("u1", "https://Hooks.Example.com/a"),
                Is.EqualTo(EndpointLane.DestinationKey("u1", "https://hooks.example.com:443/b?x=1")));
            Assert.That(EndpointLane.DestinationKey("u1", "https://hooks.example.com/a"),
                Is.Not.EqualTo(EndpointLane.DestinationKey("u2", "https://hooks.example.com/a")), "another user's subscriptions are counted apart");
            Assert.That(EndpointLane.DestinationKey("u1", "https://hooks.example.com/a"),
                Is.Not.EqualTo(EndpointLane.DestinationKey("u1", "https://hooks.example.com:8443/a")), "another port is another destination");
        });
    }
}
