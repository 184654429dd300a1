"""The console in a real browser: Debian's headless Chromium driven by
selenium through /usr/bin/chromedriver, against the console served by
waitress, a real Mosquitto (TLS, ACL) and a meter of the unix port. Login,
the meter list, a customer's top-up end to end (customer page -> provider
-> webhook -> signed top-up -> the meter applies it -> the balance on the
console), a region tariff publish the meter takes, and a burst alarm from
the meter. Screenshots go to build/screenshots/console-*.png, or to the
folder in CONSOLE_SHOTS (`make screenshots` writes docs/img, the pictures
docs/HEADEND.md shows), so a test run leaves the tree as it was."""

import os
import tempfile
from pathlib import Path

import pytest
from conftest import World, _need_mosquitto, wait_for
from paykit import SECRET, Served, console

from utility import store
from utility.provider_stub import create_provider

ROOT = Path(__file__).resolve().parents[2]
IMG = Path(os.environ.get("CONSOLE_SHOTS") or ROOT / "build" / "screenshots")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,680")
OPERATOR, PASSWORD = "olga", "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            # a failure, not a skip: `make test` installs them (tools/bootstrap.sh)
            pytest.fail(f"{path} missing: run `make test` as root or apt-get install {package}",
                        pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM           # given both paths, selenium-manager is never run
    profile = tempfile.TemporaryDirectory()
    for flag in FLAGS + (f"--user-data-dir={profile.name}",):
        opts.add_argument(flag)
    # nothing may be downloaded: a selenium-manager run would fail on this path
    saved = os.environ.get("SE_MANAGER_PATH")
    os.environ["SE_MANAGER_PATH"] = "/nonexistent/selenium-manager"
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    finally:
        if saved is None:
            del os.environ["SE_MANAGER_PATH"]
        else:
            os.environ["SE_MANAGER_PATH"] = saved
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    profile.cleanup()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _need_mosquitto()
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    w = World(tmp, {"B1": 1}, db=url).start()
    provider = create_provider(None, SECRET)
    w.provider_site = Served(provider)
    app = console(url, w.he, w.provider_site.url)
    w.site = Served(app)
    provider.config["WEBHOOK_URL"] = w.site.url + "/payments/webhook"
    from utility.web.auth import add_user
    add_user(store.open_store(url), OPERATOR, PASSWORD, "operator")
    w.meter = w.start_meter("B1", burst_s=60, burst_lph=3125)
    w.meter.wait(lambda s: s["connected"], what="B1 connected")
    yield w
    w.site.close()
    w.provider_site.close()
    w.close()


def shot(driver, name):
    IMG.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(IMG / f"console-{name}.png"))


def text_of(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css).text


def status_shown(driver):
    """The confirmation page's data-status, None while it reloads itself."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    try:
        return driver.find_element(By.ID, "status").get_attribute("data-status")
    except WebDriverException:
        return None


def until(driver, url, pred, what, timeout=30):
    """Load url again until pred(driver) holds (the pages have no script)."""
    def look():
        driver.get(url)
        return pred(driver)
    return wait_for(look, timeout, what, interval=0.5)


def fill(driver, fields):
    from selenium.webdriver.common.by import By
    for name, value in fields.items():
        el = driver.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)


def submit(driver, css="button[type=submit]"):
    """Click and wait for the next page: a click returns before the
    navigation it starts, so the old page would still be there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 20).until(EC.staleness_of(old))
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def test_console_in_a_browser_login_meters_topup_tariff_alarm(world, browser):
    site = world.site.url
    d = browser

    # a wrong password is refused, the right one lets the operator in
    d.get(site + "/login")
    fill(d, {"name": OPERATOR, "password": "wrong"})
    submit(d)
    assert "Wrong name or password" in d.page_source
    fill(d, {"name": OPERATOR, "password": PASSWORD})
    submit(d)
    assert f"{OPERATOR} (operator)" in text_of(d, "nav")

    # the meter list: B1 online
    until(d, site + "/meters", lambda d: "online" in text_of(d, "#meter-B1 .status"), "B1 online")
    shot(d, "meters")

    # a customer tops up 12.50 on the customer page and pays at the provider
    d.get(site + "/pay")
    fill(d, {"meter": "B1", "amount": "12.50"})
    submit(d, "#pay")
    assert d.current_url.startswith(world.provider_site.url + "/checkout"), text_of(d, "body")
    assert text_of(d, "#amount") == "12.50 EUR" and text_of(d, "#meter") == "B1"
    submit(d, "#pay")
    assert "/pay/done?ref=" in d.current_url
    wait_for(lambda: status_shown(d) == "settled",
             40, "the confirmation page to show the meter's ack (it refreshes itself)", interval=0.5)
    assert "the meter has applied the credit" in text_of(d, "#status")
    shot(d, "topup")
    world.meter.wait(lambda s: s["bal"] >= 1_250_000, what="the credit on the meter")
    until(d, site + "/meters", lambda d: text_of(d, "#meter-B1 .balance") == "12.50",
          "the balance from the meter's telemetry")
    d.get(site + "/payments")
    assert "settled" in text_of(d, "#payments")
    shot(d, "payments")

    # a region tariff, published now: the meter stages it and reports its version
    d.get(site + "/tariffs")
    fill(d, {"target": "1", "version": "7", "blocks": "0:3.50", "standing": "0"})
    submit(d, "fieldset button[type=submit]")      # not the nav's "Log out"
    until(d, site + "/tariffs", lambda d: "published" in text_of(d, "#scheduled"), "the tariff published")
    d.execute_script("document.getElementById('scheduled').scrollIntoView()")
    shot(d, "tariffs")
    world.meter.wait(lambda s: s.get("tv") == 7, what="tariff 7 active on the meter")

    # a burst (5 m3/h for over a minute) raises the meter's alarm, shown on the console
    world.meter.set(flow=5000)
    until(d, site + "/alarms", lambda d: "burst" in text_of(d, "#event-alarms"), "the burst alarm", 60)
    shot(d, "alarms")
    world.meter.set(flow=0)
    assert all((IMG / f"console-{n}.png").stat().st_size < 150_000
               for n in ("meters", "topup", "payments", "tariffs", "alarms"))
