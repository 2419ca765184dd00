"""`make quick`: the pipeline's own stages with a few parameters turned down, as `dvc exp run -S` sets them."""

import re
import shutil
import sys

from conftest import REPO_ROOT

from imdb_rnn.check import check_params
from imdb_rnn.config import arch_settings
from imdb_rnn.params import read_architectures, read_params

sys.path.insert(0, str(REPO_ROOT / "tools"))
from parallel_repro import apply_params_overrides  # noqa: E402


def quick_overrides():
    """The -S overrides of the Makefile's QUICK variable, continuation lines joined."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    value = re.search(r"^QUICK := (.*)$", makefile, re.M).group(1)
    return [override.strip("'") for override in re.findall(r"-S ('[^']*'|\S+)", value)]


def test_the_quick_settings_pass_every_check_and_turn_the_pipeline_down(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params)
    overrides = quick_overrides()
    assert len(overrides) >= 4, overrides
    apply_params_overrides(overrides, params)
    check_params(
        params, {"out": tmp_path / "checked.txt", "settings": tmp_path / "settings"}
    )  # raises PipelineError on a bad value

    quick, full = read_params(params), read_params(REPO_ROOT / "params.yaml")
    trained = read_architectures(params)
    assert 2 <= len(quick["architectures"]) <= 3 and list(trained) == quick["architectures"]  # nothing pretrained
    chapter = {arch for archs in full["chapter"].values() for arch in archs}
    assert set(trained) <= chapter
    for arch in trained:  # every model reads fewer tokens for fewer epochs than in the full pipeline
        (_, quick_train), (_, full_train) = arch_settings(params, arch), arch_settings(REPO_ROOT / "params.yaml", arch)
        assert quick_train.epochs < full_train.epochs and quick_train.seq_len < full_train.seq_len
