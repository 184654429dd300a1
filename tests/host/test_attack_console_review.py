"""An outside review's attacks on the operators' console (docs/SECURITY.md
"Operators' console" O9, O10): a login link whose next= a browser reads as
another host, and the console framed by another site (clickjacking).
Flask's test client on SQLite and PostgreSQL."""

import pytest
from consolekit import meter_world, token

NOW = 1_767_600_000


@pytest.fixture()
def app(store_url):
    return meter_world(store_url, NOW)


def test_attack_console_review_next_that_a_browser_reads_as_another_host(app):
    # browsers take "\" for "/" and drop tabs and newlines in a URL:
    # "/\evil.example" and "/\t/evil.example" are "//evil.example" to them
    c = app.test_client()
    for target in ("/\\evil.example/", "/%5Cevil.example", "/%09/evil.example",
                   "/%0A/evil.example", "/%0D/evil.example", "/ /evil.example"):
        r = c.post(f"/login?next={target}", data={"csrf_token": token(c.get("/login").text),
                                                  "name": "bob", "password": "bobbob"})
        assert r.status_code == 302 and r.location == "/meters", target
        c.post("/logout", data={"csrf_token": token(c.get("/meters").text)})


def test_attack_console_review_no_page_can_be_framed_by_another_site(app):
    c = app.test_client()
    for path in ("/login", "/pay"):
        r = c.get(path)
        assert r.headers.get("X-Frame-Options") == "DENY", path
        assert "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", ""), path
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path
