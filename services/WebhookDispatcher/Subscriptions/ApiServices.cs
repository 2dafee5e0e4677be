using System.Security.Claims;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using WebhookDispatcher.Data;
using WebhookDispatcher.Deliveries;
using WebhookDispatcher.Security;

namespace WebhookDispatcher.Subscriptions;

/// <summary>
/// The caller and the services a management API handler works with, bound per request by
/// <c>[AsParameters]</c> so handlers take one bundle instead of a long parameter list (the
/// pattern of dotnet/eShop's <c>OrderServices</c>).
/// </summary>
/// <param name="User">The caller, authenticated by the group's policy.</param>
/// <param name="Db">The request's database context.</param>
/// <param name="Time">The process clock.</param>
/// <param name="Options">The management API's settings.</param>
/// <param name="Delivery">The delivery settings (which networks subscriber URLs may point into).</param>
/// <param name="Sealer">Seals and opens the secrets at rest.</param>
/// <param name="Renders">The turns template renderings take (preview and test, as deliveries).</param>
internal sealed record ApiServices(
    ClaimsPrincipal User, WebhookDbContext Db, TimeProvider Time, IOptions<SubscriptionOptions> Options, IOptions<DeliveryOptions> Delivery,
    SecretSealer Sealer, Shaping.TemplateRenderGate Renders)
{
    /// <summary>The caller's user id (the token's <c>sub</c>).</summary>
    /// <exception cref="InvalidOperationException">The token has no <c>sub</c> claim.</exception>
    public string UserId => User.UserId();

    /// <summary>The caller's subscriptions, read-only (writes go through <see cref="WebhookDbContext.Subscriptions"/>).</summary>
    public IQueryable<WebhookSubscription> Owned()
    {
        var userId = UserId;
        return Db.Subscriptions.AsNoTracking().Where(s => s.UserId == userId);
    }
}

/// <summary>
/// The paging query parameters of a list, bound by <c>[AsParameters]</c>: <c>limit</c>, and
/// either <c>offset</c> or <c>cursor</c>. Kept as text so a bad value is answered with problem
/// details naming it (see <see cref="ApiInput.Query"/>).
/// </summary>
/// <param name="Limit">Page size, 1 to <see cref="SubscriptionsApi.MaxLimit"/>.</param>
/// <param name="Offset">Rows to skip.</param>
/// <param name="Cursor">The previous page's <c>next_cursor</c>.</param>
internal sealed record PageQuery(
    [FromQuery(Name = "limit")] string? Limit,
    [FromQuery(Name = "offset")] string? Offset,
    [FromQuery(Name = "cursor")] string? Cursor);
