"""A real headless Chromium on the chat page, talking to a TCP client through the server.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (listed in .ci/apt-packages) and
the ``selenium`` package; skips with the reason when one is missing.
"""
import shutil
import tempfile

import pytest

from chat_support import ChatProcess

pytestmark = pytest.mark.timeout(180)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromedriver are needed (Debian: chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="loop-chat-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_text(driver, selector, text, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element(By.CSS_SELECTOR, selector).text,
        message=f"{text!r} never appeared in {selector}")


def _type(driver, line):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    box = driver.find_element(By.ID, "input")
    box.send_keys(line)
    box.send_keys(Keys.ENTER)


def test_browser_and_tcp_client_exchange_messages(browser):
    with ChatProcess() as server:
        tcp = server.client()
        tcp.send("/nick terminal")
        tcp.expect("joined #lobby")
        browser.get(server.url)
        _wait_for_text(browser, "#status", "connected")
        _wait_for_text(browser, "#log", "welcome to loop chat")
        _type(browser, "/nick browser")
        tcp.expect("is now known as browser")
        _type(browser, "hello from chromium")
        tcp.expect("[lobby] <browser> hello from chromium")
        tcp.send("hello from the terminal")
        _wait_for_text(browser, "#log", "[lobby] <terminal> hello from the terminal")
        tcp.send("/me waves")
        _wait_for_text(browser, "#log", "* terminal waves")
        # Both move to another room; the page follows.
        _type(browser, "/join green")
        tcp.send("/join green")
        _wait_for_text(browser, "#log", "terminal joined #green")
        _type(browser, "/who")
        _wait_for_text(browser, "#log", "in #green: browser, terminal")
        # Shutdown reaches the page too, with the close reason.
        rc, _ = server.terminate()
        assert rc == 0
        _wait_for_text(browser, "#log", "server shutting down, bye")
        _wait_for_text(browser, "#status", "disconnected")
