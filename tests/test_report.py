"""`snakemake --report` on the tiny pipeline: one self-contained HTML file holding every
figure, table and record with its caption, which a real browser (headless Chromium)
renders with no console errors. The screenshot is kept in tests/artifacts/ (git-ignored)."""
import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, run_snakemake

FIGURES = ["quantizer_loss", "code_usage", "sid_collisions", "sft_training", "rl_training", "metrics_at_k",
           "summary", "significance", "stage_times"]
TABLES = ["metrics.tsv", "significance.tsv", "report/summary.tsv", "provenance.json"]
ARTIFACTS = ROOT / "tests" / "artifacts"
# Console lines that Snakemake's own report page writes on every load (its bundled Tailwind
# build warns that it is the CDN build); anything else on the console fails the test.
HARMLESS_CONSOLE = (re.compile(r"cdn\.tailwindcss\.com should not be used in production"),)


@pytest.fixture(scope="module")
def report_html(tiny_pipeline):
    work, configs = tiny_pipeline
    path = work / "results" / "report.html"
    out = run_snakemake(work, "--cores", "1", "--report", path, configfiles=configs)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return path


def report_results(html: str) -> dict:
    """The report's items: {path: {mime_type, caption, data_uri, ...}}, as Snakemake
    embeds them in the page (`var results = {...};`)."""
    block = re.search(r'<script id="results">\s*var results = (.*?);?\s*</script>', html, flags=re.S)
    assert block, "no results block in the report"
    return json.loads(block.group(1))


def test_the_report_holds_every_figure_table_and_record_with_a_caption(report_html):
    results = report_results(report_html.read_text())
    for name in FIGURES:
        item = results[f"results/synth/seed-0/report/{name}.png"]
        assert item["mime_type"] == "image/png"
        png = base64.b64decode(item["data_uri"].split("base64,", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 5000, name  # a drawn figure, not a stub
        assert len(re.sub("<[^>]+>", "", item["caption"]).split()) >= 10, name
    for name in TABLES:
        item = results[f"results/synth/seed-0/{name}"]
        assert item["data_uri"].startswith("data:") and item["caption"].strip(), name
    over_seeds = results["results/summary.tsv"]  # mean and std over the run's seeds
    assert over_seeds["data_uri"].startswith("data:") and "seed" in over_seeds["caption"]
    # Self-contained: no script or stylesheet is fetched from anywhere.
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?:', report_html.read_text())


def find_chromium():
    """Chromium from Debian's packages, installed here when missing and possible."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium, and installing it needs root and apt-get (apt-get install -y chromium)")
    out = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        pytest.skip(f"apt-get install -y chromium failed: {out.stderr[-500:]}")
    return shutil.which("chromium")


def test_the_report_renders_in_headless_chromium_without_console_errors(report_html, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    # --enable-logging writes every console message (and uncaught error) of the page to
    # stderr as `CONSOLE... "message", source: ...`; the virtual time lets React render.
    cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--window-size=1400,1000",
           f"--screenshot={shot}", report_html.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    (ARTIFACTS / "report_console.log").write_text(out.stderr)
    assert out.returncode == 0, out.stderr[-3000:]
    console = re.findall(r':CONSOLE[:(]?\d*\)?\] "(.*)", source: ', out.stderr)
    errors = [m for m in console if not any(p.search(m) for p in HARMLESS_CONSOLE)]
    assert not errors, errors
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1400, 1000)
    low, high = image.getextrema()
    assert high - low > 100, "the screenshot is blank"  # the page drew something
    # The page's script ran: the DOM it built names the report's categories and opens
    # with the workflow's description.
    dom = subprocess.run([*cmd[:5], "--virtual-time-budget=15000", "--dump-dom", report_html.as_uri()],
                         capture_output=True, text=True, timeout=300).stdout
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style).*?</\1>", "", dom, flags=re.S)).split())
    for shown in ("Figures", "Provenance", "Results", "generative recommendation with semantic IDs"):
        assert shown in text, shown
