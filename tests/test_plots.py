"""`dvc plots show` draws every vega plot without network, from the page `make install` builds.

DVC's own page loads vega, vega-lite and vega-embed from a CDN; .dvc/config points
`plots.html_template` at build/plots/page.html, which has them inlined (tools/plots_page.py).
The user's path, in a throwaway DVC repository on the tiny archive: repro one small architecture,
`dvc plots show`, open the page in headless Chromium with every host name unresolvable, and count
the plots vega drew. The same check on DVC's default page draws none: the proof it can fail.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, assert_one_line_error, make_dvc_repo, run_script
from dvc_render.html import PAGE_HTML

CHROMIUM = Path("/usr/bin/chromium")
PAGE = REPO_ROOT / "build" / "plots" / "page.html"  # what `make install` generates
ARCH = "rnn"  # the cheapest architecture; the plots of the others are skipped by DVC (files missing)

PAGE_SCRIPT = REPO_ROOT / "tools" / "plots_page.py"


def configured_template():
    """The project's plots.html_template, resolved as DVC does: relative to the .dvc folder."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".dvc" / "config")
    return (REPO_ROOT / ".dvc" / config["plots"]["html_template"]).resolve()


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory, tiny_archive):
    repo = make_dvc_repo(tmp_path_factory.mktemp("plots"), tiny_archive)
    repo.train_only([ARCH], epochs=2, patience=2)  # two points on each learning curve
    repo.commit("pipeline")
    repo.dvc("repro", f"evaluate@{ARCH}-42")
    return repo


def render_offline(page, tmp_path):
    """The DOM of `page` after Chromium ran its scripts with no host name resolvable (no CDN)."""
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0 and "<body" in result.stdout, result.stderr[-500:]
    return result.stdout


def test_configured_template_is_the_page_make_install_builds():
    assert configured_template() == PAGE


def test_page_refuses_other_versions_than_dvcs(tmp_path):
    assert run_script(PAGE_SCRIPT, "--packages", cwd=tmp_path).stdout.split() == [
        "vega@5.20.2",
        "vega-lite@5.2.0",
        "vega-embed@6.18.2",
    ]  # what DVC's own page loads from its CDN
    modules = tmp_path / "node_modules"
    for name, version in [("vega", "5.21.0"), ("vega-lite", "5.2.0"), ("vega-embed", "6.18.2")]:
        (modules / name).mkdir(parents=True)
        (modules / name / "package.json").write_text(json.dumps({"version": version, "jsdelivr": "x.js"}))
        (modules / name / "x.js").write_text("var x = {};")
    result = run_script(PAGE_SCRIPT, "--modules", modules, tmp_path / "page.html", cwd=tmp_path)
    assert_one_line_error(result, "vega 5.21.0", "5.20.2", "make install")
    assert not (tmp_path / "page.html").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_install_without_npm_says_so_and_writes_dvcs_own_page(tmp_path):
    venv = Path(sys.executable).parent.parent
    if not (venv / ".installed").is_file():
        pytest.skip(f"{venv} was not made by `make install`: make would rebuild it")
    (tmp_path / "tools").mkdir()
    for name in ("Makefile", "requirements.txt", "pyproject.toml", "tools/plots_page.py"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    for name in ("requirements.txt", "pyproject.toml"):
        os.utime(tmp_path / name, (0, 0))  # older than the venv's stamp: make leaves the venv alone
    # not a sub-make of `make test`: its flags and variables would ride along in MAKEFLAGS
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for _ in range(2):  # the second make tries npm again: no stamp was written
        result = subprocess.run(
            ["make", "install", f"VENV={venv}", "NPM=no-such-npm"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "no-such-npm not found: dvc plots show will load vega from a CDN (blank plots offline)"
        ]
    # the file .dvc/config names exists (DVC stops when it does not) and is DVC's own page
    assert (tmp_path / "build/plots/page.html").read_text(encoding="utf-8") == PAGE_HTML
    assert not (tmp_path / "build/plots/.offline").exists()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium to render the page headless")
@pytest.mark.parametrize("template", ["project", "dvc_default"])
def test_plots_page_draws_every_vega_plot_offline(request, tmp_path, template):
    if template == "project" and (not PAGE.is_file() or "{scripts}" in PAGE.read_text(encoding="utf-8")):
        pytest.skip(f"{PAGE} without the inlined libraries: `make install` found no npm")
    plots_repo = request.getfixturevalue("plots_repo")  # after the skip: the repro costs 20 s
    if template == "project":
        plots_repo.dvc("config", "plots.html_template", configured_template())
    else:
        plots_repo.dvc("config", "--unset", "plots.html_template", check=False)
    out = tmp_path / "dvc_plots"
    plots_repo.dvc("plots", "show", "-o", out)
    page = out / "index.html"
    source = page.read_text(encoding="utf-8")
    vega_plots = source.count("vegaEmbed('#")
    # learning curves (3), ROC, precision-recall, review lengths, the confusion matrix
    assert vega_plots == 7, f"{vega_plots} vega plots in the page"

    dom = render_offline(page, tmp_path)
    drawn = len(re.findall(r'<(?:canvas|svg)\b[^>]*class="marks"', dom))
    if template == "project":
        assert drawn == vega_plots, f"{drawn} of {vega_plots} vega plots drawn offline"
        assert "cdn.jsdelivr.net" not in source  # nothing to fetch: the page works copied anywhere
    else:
        # DVC's page fetches vega from cdn.jsdelivr.net: offline, not one plot draws
        assert drawn == 0 and "cdn.jsdelivr.net" in source
