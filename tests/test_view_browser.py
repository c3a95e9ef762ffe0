"""`pdc view` in a real browser (`pytest -m browser`; .ci/run installs Debian's chromium and
chromium-driver first): a tiny_llama run trained a few steps and harvested, served by the real
`pdc view` command, clicked through in headless Chromium with Selenium — run page, a site, a
sort, a component (shaded strips, PMI rows), a probe, an ablation, a traversal URL. Each page's
screenshot goes to docs/view/ (docs/view.md shows them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import pdc

from conftest import REPO
from view_helpers import harvest, tiny_run

pytestmark = pytest.mark.browser
SHOTS = REPO / "docs" / "view"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outside_address() -> str | None:
    """An address of this machine that is not loopback (None when it has none)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the route's source address
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pdc view RUN --harvest DIR` on a free loopback port; its base URL."""
    base = tmp_path_factory.mktemp("browser")
    run_dir = tiny_run(base, steps=4)
    store = harvest(pdc.load_run(run_dir), base / "harvest")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pdc.cli", "view", str(run_dir), "--harvest", str(store),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, (base / "server.log").read_text()
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def shot(driver: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    width = driver.execute_script("return document.body.scrollWidth")  # type: ignore[attr-defined]
    height = driver.execute_script("return document.body.scrollHeight")  # type: ignore[attr-defined]
    driver.set_window_size(max(1280, width), min(max(800, height + 40), 2400))  # type: ignore[attr-defined]
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    driver.set_window_size(1280, 1000)  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000, path


def test_click_through_the_viewer(server: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.get(server + "/")  # type: ignore[attr-defined]
    assert "tiny_llama" in d.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
    assert d.find_elements(By.CSS_SELECTOR, "svg.chart polyline")  # type: ignore[attr-defined]  # the loss curves
    shot(d, "run")
    d.find_element(By.CSS_SELECTOR, "a.site-link").click()  # type: ignore[attr-defined]
    site = d.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
    assert site.startswith("layers.")
    d.find_element(By.CSS_SELECTOR, 'a.sort[data-sort="mean_ci"]').click()  # type: ignore[attr-defined]
    assert d.find_element(By.ID, "sorted-by").text == "mean_ci"  # type: ignore[attr-defined]
    rows = d.find_elements(By.CSS_SELECTOR, "#components tr")[1:]  # type: ignore[attr-defined]
    means = [float(r.find_elements(By.TAG_NAME, "td")[2].text) for r in rows]
    assert len(means) == 16 and means == sorted(means, reverse=True)
    assert d.find_elements(By.CSS_SELECTOR, "svg.spark rect")  # type: ignore[attr-defined]
    shot(d, "site")
    d.find_element(By.CSS_SELECTOR, "a.component-link").click()  # type: ignore[attr-defined]
    cells = d.find_elements(By.CSS_SELECTOR, "#top-examples .tok")  # type: ignore[attr-defined]
    shaded = [c for c in cells if float(c.get_attribute("data-ci")) > 0.05]
    assert shaded and "214, 39, 40" in shaded[0].get_attribute("style")
    assert shaded[0].get_attribute("title").startswith("CI ") and "act" in shaded[0].get_attribute("title")
    assert len(d.find_elements(By.CSS_SELECTOR, "#pmi-input tr")) > 1  # type: ignore[attr-defined]
    shot(d, "component")
    d.get(server + "/search?q=self")  # type: ignore[attr-defined]
    assert len(d.find_elements(By.CSS_SELECTOR, "#results tr")) > 1  # type: ignore[attr-defined]
    shot(d, "search")
    d.get(server + "/probe")  # type: ignore[attr-defined]
    d.find_element(By.ID, "probe-run").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 300).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".probe-table td.tok")))
    assert not d.find_element(By.ID, "probe-status").text  # type: ignore[attr-defined]
    assert len(d.find_elements(By.CSS_SELECTOR, ".probe-table")) == 6  # type: ignore[attr-defined]
    shot(d, "probe")
    d.get(server + f"/ablate?site={site}&component=3")  # type: ignore[attr-defined]
    assert "#3" in d.find_element(By.ID, "ablate-list").text  # type: ignore[attr-defined]
    d.find_element(By.ID, "ablate-run").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 300).until(ready.presence_of_element_located((By.CSS_SELECTOR, "#ablate-table td")))
    assert len(d.find_elements(By.CSS_SELECTOR, "#ablate-table tr")) > 5  # type: ignore[attr-defined]
    shot(d, "ablate")
    d.get(server + "/api/..%2f..%2fetc%2fpasswd")  # type: ignore[attr-defined]
    assert '"status":404' in d.page_source and "root:" not in d.page_source  # type: ignore[attr-defined]


def test_traversal_is_404(server: str) -> None:
    for path in ("/api/..%2f..%2fetc%2fpasswd", "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server + path, timeout=10)
        assert caught.value.code == 404 and caught.value.headers["content-type"] == "application/json"


def test_other_addresses_of_this_machine_are_closed(server: str) -> None:
    """The default bind is loopback: the machine's own non-loopback address refuses the port
    (skipped only on a machine that has no such address, where there is nothing to reach)."""
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()
