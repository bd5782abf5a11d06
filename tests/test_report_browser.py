"""The demo's report.html in a real headless Chromium (Selenium, the OS's browser and driver):
it loads from file:// without console errors, hovering shows a cell's details, filters remove
points, a click highlights the point in the linked views. Screenshots go to the test's
tmp_path and, when set, `$MEMSIM_SCREENSHOT_DIR`.

Skipped, saying what is missing, without Selenium or without Chromium and its driver
(`apt-get install chromium chromium-driver`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver",
            "/usr/lib/chromium-browser/chromedriver")


def _find(names: tuple[str, ...], variable: str) -> str | None:
    given = os.environ.get(variable)
    if given:
        return given if Path(given).is_file() else None
    for name in names:
        found = shutil.which(name) if "/" not in name else (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of a multi-device, multi-variant sweep: the demo's."""
    from sweeps import fresh_repo_demo

    found = fresh_repo_demo()
    if found is not None:
        return found / "report.html"
    out = tmp_path_factory.mktemp("demo") / "memsim-demo"
    subprocess.run([sys.executable, "-m", "memsim", "demo", "--out", str(out), "--no-progress"],
                   check=True, capture_output=True, cwd=out.parent)
    return out / "report.html"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install '.[test]' (or pip install selenium)")
    browser = _find(_BROWSERS, "MEMSIM_CHROMIUM")
    chromedriver = _find(_DRIVERS, "MEMSIM_CHROMEDRIVER")
    if browser is None or chromedriver is None:
        missing = " and ".join(n for n, p in (("Chromium", browser), ("chromedriver", chromedriver))
                               if p is None)
        pytest.skip(f"no {missing} found (PATH, or $MEMSIM_CHROMIUM / $MEMSIM_CHROMEDRIVER): "
                    "apt-get install chromium chromium-driver")
    # the given browser and driver only: Selenium Manager must not download anything
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        chrome = webdriver.Chrome(service=Service(executable_path=chromedriver),
                                  options=options)
    except Exception as e:  # a browser that cannot start here (no display libraries, ...)
        pytest.skip(f"{browser} with {chromedriver} did not start: {e!r}"[:400])
    try:
        yield chrome
    finally:
        chrome.quit()
        if offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = offline


def _open(driver: Any, report: Path) -> dict[str, Any]:
    """Load the page, wait for the Pareto view, return the embedded data."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(report.resolve().as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.querySelectorAll('#pareto-view .pt').length"))
    data: dict[str, Any] = json.loads(driver.execute_script(
        "return document.getElementById('memsim-data').textContent"))
    return data


def _count(driver: Any, selector: str) -> int:
    return int(driver.execute_script(f"return document.querySelectorAll({selector!r}).length"))


def _reachable(driver: Any, view: str, cells: list[int]) -> int:
    """The first of `cells` whose point in `view` is what the mouse at its centre meets."""
    for i in cells:
        on_top = driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "if (!e) return false; e.scrollIntoView({block: 'center'});"
            "const r = e.getBoundingClientRect();"
            "const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
            "return hit === e;", f'#{view} .pt[data-cell="{i}"]')
        if on_top:
            return i
    raise AssertionError(f"none of {len(cells)} points is reachable by the mouse in #{view}")


def _shot(driver: Any, path: Path) -> Path:
    driver.save_screenshot(str(path))
    folder = os.environ.get("MEMSIM_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)
    print(f"screenshot: {path}" + (f" (and {folder})" if folder else ""))
    return path


def _knob_text(data: dict[str, Any], i: int) -> list[str]:
    row = data["rows"][i]
    return [f"{name[5:]} = {row[k]:g}" for k, name in enumerate(data["columns"])
            if name.startswith("knob.") and row[k] is not None]


def test_the_page_loads_without_errors(driver: Any, demo_report: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    data = _open(driver, demo_report)
    print(f"loaded {demo_report} ({demo_report.stat().st_size} bytes) in "
          f"{time.perf_counter() - start:.2f} s")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    # offline: the page asked for nothing beyond itself
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    drawn = _count(driver, "#pareto-view .pt")
    assert drawn == sum(data["priced"]) > 0
    assert len({row[data["columns"].index("device")] for row in data["rows"]}) > 1
    assert _count(driver, "#pareto-view svg.panel") > 1 and _count(driver, "#knob-view .pt") > 0
    assert _count(driver, "#ber-view .pt") > 0
    driver.execute_script("window.scrollTo(0, 0)")
    _shot(driver, tmp_path / "report-top.png")
    driver.execute_script("document.getElementById('explore').scrollIntoView()")
    _shot(driver, tmp_path / "report-views.png")


def test_hovering_a_front_point_shows_its_knobs(driver: Any, demo_report: Path,
                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = _open(driver, demo_report)
    front = sorted({i for *_, members in data["fronts"] for i in members})
    assert front
    i = _reachable(driver, "pareto-view", front)
    point = driver.find_element(By.CSS_SELECTOR, f'#pareto-view .pt[data-cell="{i}"]')
    ActionChains(driver).move_to_element(point).perform()
    tooltip = driver.find_element(By.ID, "tooltip")
    WebDriverWait(driver, 5).until(lambda d: tooltip.is_displayed())
    text = tooltip.text
    row = data["rows"][i]
    device = row[data["columns"].index("device")]
    knobs = _knob_text(data, i)
    assert knobs and all(k in text for k in knobs), (knobs, text)
    assert device in text and "front" in text and f"cell {i} " in text
    for term in ("read", "static", "write"):
        assert f"{term}: " in text
    _shot(driver, tmp_path / "report-tooltip.png")


def test_a_device_filter_removes_exactly_its_points(driver: Any, demo_report: Path) -> None:
    from selenium.webdriver.common.by import By

    data = _open(driver, demo_report)
    devices = data["columns"].index("device")
    before = _count(driver, "#pareto-view .pt")
    label = data["devices"][0]["label"]
    own = [i for i, (row, priced) in enumerate(zip(data["rows"], data["priced"], strict=True))
           if priced and row[devices] == label]
    assert 0 < len(own) < before
    box = driver.find_element(By.ID, "filter-device-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", label))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.click()
    assert _count(driver, "#pareto-view .pt") == before - len(own)
    assert _count(driver, f'.pt[data-cell="{own[0]}"]') == 0  # gone from every view
    box.click()
    assert _count(driver, "#pareto-view .pt") == before


def test_a_click_highlights_the_point_in_the_linked_views(driver: Any, demo_report: Path,
                                                          tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    data = _open(driver, demo_report)
    columns = data["columns"]
    swept = {d["label"] for d in data["devices"] if d["ber"] is not None and d["swept"]}
    candidates = [i for i, (row, priced) in enumerate(zip(data["rows"], data["priced"],
                                                          strict=True))
                  if priced and row[columns.index("device")] in swept
                  and row[columns.index("accuracy")] is not None]
    # a point of a device other than the one the knob view opens with
    first = data["devices"][0]["label"]
    candidates.sort(key=lambda i: data["rows"][i][columns.index("device")] == first)
    i = _reachable(driver, "pareto-view", candidates)
    device = data["rows"][i][columns.index("device")]
    driver.find_element(By.CSS_SELECTOR, f'#pareto-view .pt[data-cell="{i}"]').click()
    assert _count(driver, f'#pareto-view .pt.sel[data-cell="{i}"]') == 1
    assert _count(driver, f'#knob-view .pt.sel[data-cell="{i}"]') == 1
    assert _count(driver, f'#ber-view .pt.sel[data-cell="{i}"]') == 1
    assert _count(driver, ".pt.sel") == 3
    assert driver.find_element(By.ID, "knob-device").get_attribute("value") == device
    tooltip = driver.find_element(By.ID, "tooltip")
    assert tooltip.is_displayed() and "pinned" in (tooltip.get_attribute("class") or "")
    driver.execute_script("document.getElementById('knob-view').scrollIntoView()")
    _shot(driver, tmp_path / "report-selected.png")
    # released, the same cell's point in the linked view shows the same details on hover
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    assert _count(driver, ".pt.sel") == 0 and not tooltip.is_displayed()
    _reachable(driver, "knob-view", [i])
    ActionChains(driver).move_to_element(
        driver.find_element(By.CSS_SELECTOR, f'#knob-view .pt[data-cell="{i}"]')).perform()
    WebDriverWait(driver, 5).until(lambda d: tooltip.is_displayed())
    assert f"cell {i} " in tooltip.text and all(k in tooltip.text for k in _knob_text(data, i))


def test_a_row_of_the_answer_selects_its_point(driver: Any, demo_report: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, demo_report)
    row = driver.find_element(By.CSS_SELECTOR, "#answer tr.pick")
    cells = (row.get_attribute("data-cells") or "").split()
    assert cells
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.click()
    assert _count(driver, f'#pareto-view .pt.sel[data-cell="{cells[0]}"]') == 1
    assert "sel" in (row.get_attribute("class") or "").split()
    assert driver.find_element(By.ID, "tooltip").is_displayed()
