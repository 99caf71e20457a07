"""The serving page in a real browser: headless Chromium from Debian's packages, driven
by Selenium through the system chromedriver, against the app served by uvicorn on the
loopback address. A person types a title, picks it, and sees k recommendations.

Chromium and its driver are installed (`apt-get install -y chromium chromium-driver`)
when missing and this runs as root with apt-get; otherwise the test is skipped, saying
why. Screenshots (desktop and phone width) go to tests/artifacts/ (git-ignored)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installing Debian's packages if need be."""
    def found():
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        return browser, shutil.which("chromedriver")

    browser, driver = found()
    if browser and driver:
        return browser, driver
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium/chromedriver, and installing them needs root and apt-get "
                    "(apt-get install -y chromium chromium-driver)")
    out = subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"],
                         capture_output=True, text=True, timeout=1200)
    browser, driver = found()
    if out.returncode != 0 or not (browser and driver):
        pytest.skip(f"apt-get install -y chromium chromium-driver failed: {out.stderr[-500:]}")
    return browser, driver


@pytest.fixture(scope="module")
def server(tmp_path_factory, one_thread):
    """The app over an in-process tiny results folder, on a free loopback port."""
    import uvicorn

    from sidrec.serve.app import create_app
    from sidrec.serve.load import load_service
    from test_serve import make_results

    service = load_service(make_results(tmp_path_factory.mktemp("serve-browser")))
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(30)
    service.batcher.close()


@pytest.fixture
def browser(tmp_path):
    selenium = pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(0)
    assert selenium.__version__
    yield driver
    driver.quit()


def test_type_a_title_pick_it_and_see_k_recommendations(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server + "/")
    wait.until(lambda d: "Model rl" in d.find_element(By.ID, "about").text)

    browser.find_element(By.ID, "search").send_keys("film 7")
    pick = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "#suggestions button")))
    assert pick.text == "Film 7 (1997)"
    pick.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 10)   # k defaults to 10
    assert [chip.text for chip in browser.find_elements(By.CSS_SELECTOR, "#history li span")] == ["Film 7 (1997)"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#results li")
    ids = [int(row.get_attribute("data-id")) for row in rows]
    assert len(set(ids)) == 10 and 7 not in ids   # the history is left out
    assert all(row.find_element(By.CSS_SELECTOR, ".title").text for row in rows)
    assert all(row.find_element(By.CSS_SELECTOR, ".sid").text.startswith("SID <a_") for row in rows)
    scores = [float(row.find_element(By.CSS_SELECTOR, ".score").text) for row in rows]
    assert scores == sorted(scores, reverse=True)

    # A second pick and a smaller k: the list updates to k items.
    browser.find_element(By.ID, "search").send_keys("heat")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#suggestions button")) == 2)
    browser.find_elements(By.CSS_SELECTOR, "#suggestions button")[0].click()
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("4")
    browser.find_element(By.ID, "exclude").click()   # a change event; re-checked below
    browser.find_element(By.ID, "exclude").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 4)
    assert "4 items from rl" in browser.find_element(By.ID, "status").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))

    # Phone-sized: nothing wider than the screen.
    browser.set_window_size(390, 844)
    time.sleep(0.3)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.save_screenshot(str(ARTIFACTS / "serve_page_phone.png"))

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
