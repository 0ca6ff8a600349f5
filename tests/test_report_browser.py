"""The report in a real headless Chromium: images decode, nothing is fetched, the KFP iframe works.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and selenium; skipped without them.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest
from synthetic_results import Run, build, cpu_scenario, gpu_scenario

from liger_bench.inputs.embedded import describe_preset
from liger_bench.render.report import build_report, write_bundle

CHROMIUM = "/usr/bin/chromium"
HOSTILE_REASON = '<img src="https://example.invalid/x.png" onerror="document.title=\'pwned\'">'

ALL_IMAGES_DECODED = """
const images = Array.from(document.images);
const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
return {count: images.length, broken: broken};
"""
EXTERNAL_REFERENCES = """
const attrs = ['src', 'href', 'srcset', 'poster', 'data', 'action'];
const refs = [];
for (const el of document.querySelectorAll('*')) {
  for (const a of attrs) {
    const v = el.getAttribute(a);
    if (v && !v.startsWith('data:')) refs.push(a + '=' + v);
  }
}
const resources = performance.getEntriesByType('resource').length;
return {refs: refs, scripts: document.scripts.length, resources: resources};
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not Path(CHROMIUM).exists() or not shutil.which("chromedriver"):
        pytest.skip("needs /usr/bin/chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    yield browser
    browser.quit()


def network_requests(browser) -> list[str]:
    """URLs of every request the page (or its frames) tried since the last call."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def assert_page_is_self_contained(browser, expected_images: int) -> None:
    decoded = browser.execute_script(ALL_IMAGES_DECODED)
    assert decoded["count"] == expected_images
    assert decoded["broken"] == []
    refs = browser.execute_script(EXTERNAL_REFERENCES)
    assert refs == {"refs": [], "scripts": 0, "resources": 0}


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory) -> Path:
    runs = gpu_scenario()
    runs.append(Run(True, 32, 512, 0, status="failed", reason=HOSTILE_REASON, key="liger-bs32-<b>seq512</b>-r0"))
    bundle = build_report(*build(runs), title="GPU <grid> & co")
    folder = tmp_path_factory.mktemp("gpu-report")
    write_bundle(bundle, folder / "report.html", folder / "summary.md", folder / "table.csv")
    return folder / "report.html"


def test_report_renders_offline_with_every_figure(driver, gpu_report, tmp_path):
    network_requests(driver)
    driver.get(gpu_report.as_uri())
    assert driver.title == "GPU <grid> & co"
    assert_page_is_self_contained(driver, expected_images=4)
    body = driver.find_element("tag name", "body").text
    assert HOSTILE_REASON in body
    assert "liger-bs32-<b>seq512</b>-r0" in body
    assert "Loss parity FAILED" in driver.find_element("css selector", ".headline").text
    requests = network_requests(driver)
    assert requests, "the performance log recorded no request at all; the check would be vacuous"
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height + 150, 16000))
    screenshot = tmp_path / "report.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 50_000
    driver.set_window_size(1280, 1000)


def test_report_renders_inside_the_kubeflow_sandboxed_iframe(driver, gpu_report, tmp_path):
    page = gpu_report.read_text(encoding="utf-8")
    wrapper = tmp_path / "kfp-ui.html"
    wrapper.write_text(
        '<!DOCTYPE html><html><body><iframe id="report" sandbox="allow-scripts" '
        'style="width:1200px;height:900px" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe></body></html>',
        encoding="utf-8",
    )
    network_requests(driver)
    driver.get(wrapper.as_uri())
    driver.switch_to.frame(driver.find_element("id", "report"))
    try:
        assert_page_is_self_contained(driver, expected_images=4)
        assert "Liger:" in driver.find_element("css selector", ".headline").text
    finally:
        driver.switch_to.default_content()
    allowed = ("file:", "data:", "about:")
    assert [url for url in network_requests(driver) if not url.startswith(allowed)] == []


def test_cpu_report_explains_missing_memory_instead_of_an_empty_figure(driver, tmp_path):
    bundle = build_report(*build(cpu_scenario(), cuda=False))
    path = tmp_path / "report.html"
    path.write_text(bundle.html, encoding="utf-8")
    network_requests(driver)
    driver.get(path.as_uri())
    assert_page_is_self_contained(driver, expected_images=2)  # no Liger/baseline pair: no loss of pairs
    text = driver.find_element("tag name", "body").text
    assert "Peak GPU memory was not measured" in text
    assert "CPU run: Liger skipped" in text
    assert [url for url in network_requests(driver) if not url.startswith(("file:", "data:"))] == []


@pytest.mark.slow
def test_the_report_html_of_a_local_run_opens_as_a_page(driver, cli_local_run):
    done, output_dir = cli_local_run
    assert done.returncode == 0, done.stderr
    driver.get((output_dir / "report.html").as_uri())
    assert driver.find_element("css selector", ".headline").text.startswith("Liger was not measured: this was a CPU")
    # Throughput, per-step and loss charts (the compile arm pairs with the baseline); no memory on a CPU.
    assert_page_is_self_contained(driver, expected_images=3)
    text = driver.find_element("tag name", "body").text
    assert "The model is a tiny random Phi-3 (liger-bench's embedded model, preset 'tiny'" in text


# Layout at a 1280 px window (issue 20): every column visible, keys on one line, no blank cell.
OVERFLOWING_TABLES = """
return Array.from(document.querySelectorAll('.scroll'))
  .filter(e => e.scrollWidth > e.clientWidth)
  .map(e => e.previousElementSibling.textContent + ': ' + e.scrollWidth + ' > ' + e.clientWidth);
"""
# A cell's text laid out on several lines has several client rects (one per line box).
CELLS_ON_SEVERAL_LINES = """
const out = [];
for (const td of document.querySelectorAll('td:not(.wrap)')) {
  const range = document.createRange();
  range.selectNodeContents(td);
  if (range.getClientRects().length > 1) out.push(td.textContent);
}
return out;
"""
BLANK_CELLS = """
return Array.from(document.querySelectorAll('td'))
  .filter(td => td.textContent.trim() === '')
  .map(td => td.parentElement.firstElementChild.textContent);
"""
TEXT_OF = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);"
# The cells of the column headed arguments[0], in every table that has one.
COLUMN_TEXTS = """
const out = [];
for (const table of document.querySelectorAll('table')) {
  const index = Array.from(table.querySelectorAll('thead th')).findIndex(th => th.textContent === arguments[0]);
  if (index >= 0) for (const tr of table.querySelectorAll('tbody tr')) out.push(tr.children[index].textContent);
}
return out;
"""
# The (name, value) rows of the key-value tables (environment, model, dataset, grid).
KEY_VALUES = """
return Array.from(document.querySelectorAll('tr'))
  .filter(tr => tr.children.length === 2 && tr.children[1].classList.contains('wrap'))
  .map(tr => [tr.children[0].textContent, tr.children[1].textContent]);
"""
LONG_PATH_REASON = "FileNotFoundError: /mnt/shared/" + "very-long-folder-name/" * 12 + "model.safetensors"


def wide_runs() -> list[Run]:
    """A large grid on two 8-GPU nodes: long run keys (repeat 11), millions of tokens/s, a long unbroken path."""
    runs = [
        Run(liger, batch, seq, repeat, tokens_per_s=2_500_000.0 * batch / 64 * (1.2 if liger else 1.0),
            mem_reserved_gb=139.5)
        for liger in (True, False)
        for batch in (64, 128)
        for seq in (16384, 32768)
        for repeat in (10, 11)
    ]  # fmt: skip
    runs.append(Run(True, 256, 32768, 11, status="failed", reason=LONG_PATH_REASON))
    return runs


def open_report(driver, tmp_path, results, histories, name: str):
    path = tmp_path / f"{name}.html"
    path.write_text(build_report(results, histories).html, encoding="utf-8")
    driver.set_window_size(1280, 1000)
    driver.get(path.as_uri())
    assert driver.execute_script("return window.outerWidth") == 1280


# Not "gpu": a test whose id holds that word is taken for a GPU test (conftest.py).
@pytest.mark.parametrize("scenario", ["h100-grid", "large-grid", "cpu-grid"])
def test_at_1280_px_every_column_is_visible_keys_stay_on_one_line_and_no_cell_is_blank(driver, tmp_path, scenario):
    if scenario == "cpu-grid":
        results, histories = build(cpu_scenario(), cuda=False)
    else:
        results, histories = build(gpu_scenario() if scenario == "h100-grid" else wide_runs())
    if scenario == "large-grid":
        for result in results:
            result["config"].update(gpus_per_run=8, nodes_per_run=2)
    open_report(driver, tmp_path, results, histories, scenario)
    assert driver.execute_script(OVERFLOWING_TABLES) == []
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert driver.execute_script(CELLS_ON_SEVERAL_LINES) == []
    keys = driver.execute_script(TEXT_OF, "td.text")
    assert any(key.startswith(("baseline-bs", "liger-bs")) for key in keys)  # the check above saw run keys
    assert driver.execute_script(BLANK_CELLS) == []
    if scenario == "large-grid":
        assert "baseline-bs128-seq32768-r11" in keys
        (reason,) = [text for text in driver.execute_script(TEXT_OF, "td.wrap") if text.startswith("FileNotFound")]
        assert reason == LONG_PATH_REASON  # wrapped inside its column, not cut


def test_the_cpu_report_says_unknown_for_mfu_and_the_gpu_peak_and_names_the_embedded_model(driver, tmp_path):
    results, histories = build(cpu_scenario(), cuda=False)
    for result in results:
        result["model"].update(name="/root/.cache/liger-bench/phi3-tiny-v2-seed0", embedded=describe_preset("tiny"))
    open_report(driver, tmp_path, results, histories, "cpu-embedded")
    assert set(driver.execute_script(COLUMN_TEXTS, "MFU")) == {"unknown"}
    grid = dict(driver.execute_script(KEY_VALUES))
    assert grid["peak_tflops"].startswith("unknown, so MFU is not reported")
    assert grid["embedded"] == describe_preset("tiny")
    caveats = driver.execute_script(TEXT_OF, ".caveats li")
    assert caveats[1].startswith("The model is a tiny random Phi-3 (liger-bench's embedded model, preset 'tiny'")
    assert "Loss per step of paired runs" not in driver.execute_script(TEXT_OF, "h3")


def test_the_searched_frontier_fits_1280_px_with_its_figure(driver, tmp_path):
    """The frontier table of four searches (issue 24), the probes' figure and the longest-sequence table, at 1280 px."""
    from synthetic_results import sequence_searches
    from test_frontier_report import SEARCHES

    path = tmp_path / "frontier.html"
    path.write_text(build_report(*build(gpu_scenario()), SEARCHES, sequence_searches()).html, encoding="utf-8")
    driver.set_window_size(1280, 1000)
    driver.get(path.as_uri())
    assert_page_is_self_contained(driver, expected_images=5)
    assert driver.execute_script(OVERFLOWING_TABLES) == []
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert driver.execute_script(CELLS_ON_SEVERAL_LINES) == []
    assert driver.execute_script(BLANK_CELLS) == []
    assert driver.execute_script(COLUMN_TEXTS, "largest batch that fits") == ["40", "48", "36", "32"]
    assert driver.execute_script(COLUMN_TEXTS, "longest sequence that fits") == ["1,984", "3,712"]
