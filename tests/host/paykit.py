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


def form_post(base, path, fields):
    """GET the form at path (for its CSRF token and session cookie), POST
    fields to it; (status, body, Location) without following a redirect."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                         _NoRedirect())
    with opener.open(base + path, timeout=10) as r:
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                          r'name="csrf_token" value="([^"]+)"', r.read().decode())
    data = dict(fields, csrf_token=next(g for g in token.groups() if g))
    try:
        with opener.open(base + path, urllib.parse.urlencode(data).encode(), timeout=15) as r:
            return r.status, r.read().decode(), r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Location")


__all__ = ["SECRET", "Served", "console", "form_post"]
