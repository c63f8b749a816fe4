"""Path tricks through Envoy -> Gatehouse -> app: no spelling of a path reaches the app
in a form that Gatehouse checked as something else. Requests are sent byte for byte
(http.client), since httpx would resolve dot segments itself."""

from __future__ import annotations

import pytest

# carol (sales) may read none of alice's documents 1, 2, 3, 5 nor any /internal/ path.
TRICKS = [
    "/documents/../internal/documents/1/attributes",
    "/documents/%2e%2e/internal/documents/1/attributes",
    "/documents/%2E%2E/internal/documents/1/attributes",
    "/documents/1/../../internal/documents/1/attributes",
    "/documents/..%2finternal/documents/1/attributes",
    "/documents/%2F..",
    "/documents/%2F../internal/documents/1/attributes",
    "/documents%2F1",
    "/documents/1%2F",
    "/documents/1%5C..%5C4",
    "/documents/\\..\\internal/documents/1/attributes",
    "//documents/2",
    "/documents//2",
    "///documents/2",
    "/documents/2/",
    "/documents/2/.",
    "/documents/./2",
    "/documents/4/../2",
    "/documents/4/%2e%2e/2",
    "/documents/%32",
    "/documents/2;/",
    "/documents/4;/../2",
    "/documents/2%3B",
    "/documents/2%20",
    "/documents/2%00",
    "/documents/2?id=4",
    "/documents/2?x=/../../4",
    "/documents/2#/../4",
    "/Documents/2",
    "/DOCUMENTS/2",
    "/documents/%252e%252e/2",
    "/documents/2/approve/..",
]


@pytest.mark.parametrize("path", TRICKS)
def test_path_trick_does_not_bypass(client, app, path):
    mark = app.mark()
    r = client.raw("GET", path, as_="carol")
    assert r.status in (400, 403, 404), f"{path}: {r.status} {r.body[:200]!r}"
    for hit in app.since(mark):
        # Anything that reached the app was an error there, never a document or /internal.
        assert not hit["path"].startswith("/internal/"), hit
        assert hit["path"] not in ("/documents/1", "/documents/2", "/documents/3",
                                   "/documents/5"), hit


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"])
def test_other_methods_do_not_bypass(client, app, method):
    mark = app.mark()
    r = client.raw(method, "/documents/2", as_="carol")
    assert not 200 <= r.status < 300, (method, r.status)
    for hit in app.since(mark):
        assert hit["method"] not in ("GET", "HEAD"), hit


# Normalised spellings of /documents/1 resolve to the same decision as /documents/1:
# Envoy normalises before ext_authz, so Gatehouse and the app see one path.
SAME_AS_DOC_1 = ["//documents/1", "/documents//1", "/documents/./1", "/documents/4/../1",
                 "/documents/4/%2e%2e/1", "/documents/%31"]


@pytest.mark.parametrize("path", SAME_AS_DOC_1)
def test_normalised_paths_agree(client, app, path):
    mark = app.mark()
    r = client.raw("GET", path, as_="alice")
    assert r.status == 200, (path, r.status, r.body[:200])
    (hit,) = app.since(mark)
    assert hit["path"] == "/documents/1" and hit["principal"] == "alice"
    mark = app.mark()
    r = client.raw("GET", path, as_="carol")
    assert r.status == 403, (path, r.status)
    assert app.since(mark) == []


def test_internal_paths_never_reach_the_app_via_envoy(client, app):
    mark = app.mark()
    for who in (None, "alice", "root"):
        for path in ["/internal/documents/1/attributes", "/internal/test/requests",
                     "/internal/test/reset"]:
            r = client.raw("GET", path, as_=who)
            assert r.status in (401, 403, 404), (who, path, r.status)
    assert app.since(mark) == []
