"""The public unsubscribe page: a signed link scoped to one user and channel; GET asks, POST does."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_get_only_asks_then_post_unsubscribes_that_user_from_that_channel(api, ctx):
    url = ctx.links.unsubscribe_url("ann", "email")
    path = url.replace(ctx.settings.public_url, "")
    page = await api.get(path)
    assert page.status == 200 and b"Unsubscribe?" in page.raw and b'<form method="post">' in page.raw
    assert (await ctx.users.preferences("ann"))["unsubscribed_channels"] == []
    done = await api.call("POST", path, raw=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200 and b"You are unsubscribed" in done.raw
    assert await ctx.users.preferences("ann") == {"unsubscribed_channels": ["email"], "unsubscribed_all": False}
    assert (await ctx.users.preferences("bob"))["unsubscribed_channels"] == []


@pytest.mark.gen_test
async def test_one_click_post_from_a_mail_client(api, ctx):
    path = ctx.links.unsubscribe_url("cat", "all").replace(ctx.settings.public_url, "")
    response = await api.call(
        "POST", path, raw=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200
    assert (await ctx.users.preferences("cat"))["unsubscribed_all"] is True


@pytest.mark.gen_test
async def test_forged_or_altered_links_are_refused(api, ctx):
    token = ctx.links.unsubscribe_url("ann", "email").rpartition("/")[2]
    import jwt

    forged = jwt.encode(
        {"sub": "victim", "scope": "all", "aud": "notifier-unsubscribe"},
        "guess-the-key-of-the-site-and-make-it-long-enough",
        algorithm="HS256",
    )
    for bad in (token[:-3] + "abc", forged, "nonsense"):
        response = await api.call("POST", f"/unsubscribe/{bad}", raw=b"")
        assert response.status == 400 and b"not a valid unsubscribe link" in response.raw
    assert (await ctx.users.preferences("victim"))["unsubscribed_all"] is False


@pytest.mark.gen_test
async def test_user_ids_are_escaped_on_the_page(api, ctx):
    path = ctx.links.unsubscribe_url("<script>x</script>", "email").replace(ctx.settings.public_url, "")
    page = await api.get(path)
    assert b"<script>x</script>" not in page.raw and b"&lt;script&gt;" in page.raw
