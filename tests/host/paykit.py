"""The online top-up's world for tests: the console (utility.web) with
payments on and the test-side provider (utility/provider_stub.py), each
served by waitress on a free loopback port (utility/serve.py).

    with Served(console(url, he, provider.url)) as c:
        urlopen(c.url + "/pay")
"""

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

from utility.serve import Served

SECRET = b"payment provider's shared secret, test only"


def console(store_url, he, provider_url="http://127.0.0.1:9", **config):
    """The console app with online top-up on, pointed at a provider."""
    from utility.web import create_app
    cfg = {"PAYMENT_SECRET": SECRET, "PAYMENT_CHECKOUT_URL": provider_url + "/checkout",
           "PAYMENT_REFUND_URL": provider_url + "/refunds", "PAYMENT_RETRY_S": 0,
           "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False, "SCHEDULER_INTERVAL": 0}
    cfg.update(config)
    return create_app(store_url, headend=he, **cfg)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Session:
    """A cookie-keeping HTTP client for the console's forms (no browser):
    post() first GETs the form for its CSRF token, and never follows a
    redirect, so the answer's Location can be checked."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect())

    def get(self, path):
        return self._open(path)

    def post(self, path, fields, form_at=None):
        _, page, _ = self.get(form_at or path)
        token = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', page)
        data = dict(fields, csrf_token=token.group(1))
        return self._open(path, urllib.parse.urlencode(data).encode())

    def _open(self, path, data=None):
        try:
            with self.opener.open(self.base + path, data, timeout=15) as r:
                return r.status, r.read().decode(), r.headers.get("Location")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers.get("Location")


def form_post(base, path, fields):
    """POST a form of the console in a new session: (status, body, Location)."""
    return Session(base).post(path, fields)


__all__ = ["SECRET", "Served", "Session", "console", "form_post"]
