"""params.yaml is read by the YAML rules DVC writes it with: every value `dvc exp run -S` sets means the same here."""

import re
import shutil

import pytest
from conftest import REPO_ROOT, assert_one_line_error, run_script
from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import load_yaml

from imdb_rnn.config import arch_settings, architecture_section
from imdb_rnn.params import best_by_validation, read_architectures, read_params, read_seeds, stage_of
from imdb_rnn.pipeline import PipelineError


@pytest.fixture
def params_file(tmp_path):
    return shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")


# what a person types after -S, and the number it means
FORMS = [
    ("0.00001", 1e-05),
    ("1e-5", 1e-05),
    ("1E-05", 1e-05),
    ("1.5e-7", 1.5e-07),
    ("0.0003", 3e-04),
    ("3e-4", 3e-04),
    ("0.5", 0.5),
    ("1", 1.0),
    ("1.0", 1.0),
]


@pytest.mark.parametrize("typed, value", FORMS)
def test_every_number_dvc_writes_is_read_as_that_number(params_file, typed, value):
    # what `dvc exp run -S` runs: lr is in every architecture's section, weight_decay in arch_defaults
    apply_overrides(params_file, [f"gru.lr={typed}", f"arch_defaults.weight_decay={typed}"])
    assert load_yaml(params_file)["gru"]["lr"] == value  # as dvc params diff shows it
    settings, config = arch_settings(params_file, "gru")
    assert settings["lr"] == config.lr == value and isinstance(config.lr, float)
    assert config.weight_decay == value


def test_a_default_overridden_in_one_section_changes_that_architecture_alone(params_file):
    before = {name: arch_settings(params_file, name)[0] for name in read_architectures(params_file)}
    # `dvc exp run -S ++gru.dropout=0.1`: ++ adds the key to gru's section (or overrides it, were it there)
    apply_overrides(params_file, ["++gru.dropout=0.1", "++gru.lr=0.003"])
    after = {name: arch_settings(params_file, name)[0] for name in read_architectures(params_file)}
    assert after["gru"] == dict(before["gru"], dropout=0.1, lr=0.003)
    # gru's pretrained twin extends gru: it follows; nothing else moves
    assert read_params(params_file)["gru_w2v"] == {"extends": "gru"}
    assert after["gru_w2v"] == dict(before["gru_w2v"], dropout=0.1, lr=0.003)
    unchanged = set(before) - {"gru", "gru_w2v"}
    assert {n: after[n] for n in unchanged} == {n: before[n] for n in unchanged}
    apply_overrides(params_file, ["arch_defaults.dropout=0.5"])
    changed = {n for n, s in ((n, arch_settings(params_file, n)[0]) for n in before) if s["dropout"] == 0.5}
    params = read_params(params_file)
    assert changed == {n for n in before if "dropout" not in architecture_section(params, n)}


def test_a_twin_extends_its_base_and_overrides_only_what_it_sets(params_file):
    """`extends: bilstm`: the twin takes bilstm's settings as dvc exp run -S leaves them, and its own keys win."""
    apply_overrides(params_file, ["bilstm.hidden_dim=64", "++bilstm_w2v_adv.lr=0.004"])  # ++: a key the twin adds
    base, plain, adv = (arch_settings(params_file, n)[0] for n in ("bilstm", "bilstm_w2v", "bilstm_w2v_adv"))
    assert base["hidden_dim"] == plain["hidden_dim"] == 64 and adv["hidden_dim"] == 256  # adv sets its own width
    assert (base["lr"], plain["lr"], adv["lr"]) == (0.002, 0.002, 0.004)
    assert read_params(params_file)["bilstm_w2v"] == {"extends": "bilstm"}  # -S wrote no copy into the twin


@pytest.mark.parametrize(
    "extends, fragment",
    [
        ("nosuch", "parameter gru_w2v.extends is 'nosuch', which no architecture section of params.yaml defines"),
        ("train", "parameter gru_w2v.extends is 'train', which no architecture section"),
        ("gru_w2v", "parameter gru_w2v.extends goes round in a circle (gru_w2v -> gru_w2v)"),
    ],
)
def test_a_bad_base_is_a_one_line_error(params_file, extends, fragment):
    apply_overrides(params_file, [f"gru_w2v.extends={extends}"])
    with pytest.raises(PipelineError, match=re.escape(fragment)):
        arch_settings(params_file, "gru_w2v")


def test_a_circle_of_bases_is_refused(params_file):
    apply_overrides(params_file, ["++gru.extends=gru_w2v"])
    with pytest.raises(
        PipelineError, match=re.escape("parameter gru_w2v.extends goes round in a circle (gru -> gru_w2v -> gru)")
    ):
        arch_settings(params_file, "gru")


TWINS = {
    "rnn_w2v": ("rnn", {"embed_dim"}),
    "lstm_lm": ("lstm", set()),
    "gru_w2v": ("gru", set()),
    "bilstm_w2v": ("bilstm", set()),
    "stacked_lstm_w2v": ("stacked_lstm", set()),
    "attention_w2v": ("attention", set()),
    "bilstm_w2v_adv": ("bilstm", {"adversarial_eps", "hidden_dim", "ema_decay"}),
    "bilstm_mixed": ("bilstm", {"adversarial_eps", "vat_eps", "entropy_weight", "unsup_ratio"}),
}


def test_pretrained_twins_differ_from_their_base_only_in_initial_weights(params_file):
    """What comments used to promise in params.yaml: the leaderboard compares like with like."""
    names = read_architectures(params_file)
    # lstm_lm and bilstm_mixed keep their sections while out of the default lists (params.yaml says why)
    assert set(TWINS) == {n for n, init in names.items() if init != "none"} | {"lstm_lm", "bilstm_mixed"}
    apply_overrides(
        params_file, ["pretrained_architectures.lm=[lstm_lm]", "semi_supervised_architectures=[bilstm_mixed]"]
    )
    for twin, (base, allowed) in TWINS.items():
        ours, theirs = arch_settings(params_file, twin)[0], arch_settings(params_file, base)[0]
        assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} == allowed, twin


def test_the_whole_file_reads_as_dvc_reads_it(params_file):
    apply_overrides(params_file, ["gru.lr=0.00001", "arch_defaults.dropout=0.25", "vocab.max_size=30000"])
    assert read_params(params_file) == load_yaml(params_file)


@pytest.mark.parametrize(
    "typed, fragment",
    [("fast", "must be float, got 'fast'"), ("inf", "finite"), ("2.0", "<= 1.0"), ("true", "must be float, got True")],
)
def test_a_bad_number_is_a_one_line_error_naming_it(params_file, typed, fragment):
    apply_overrides(params_file, [f"gru.lr={typed}"])
    with pytest.raises(PipelineError, match="gru.lr") as err:
        arch_settings(params_file, "gru")
    assert fragment in str(err.value)


def test_yaml_1_1_words_are_not_booleans(params_file):
    text = (REPO_ROOT / "params.yaml").read_text()
    params_file.write_text(
        text.replace("\nbilstm:\n  cell: lstm\n  bidirectional: true", "\nbilstm:\n  cell: lstm\n  bidirectional: yes")
    )
    assert params_file.read_text() != text
    with pytest.raises(PipelineError, match="must be bool, got 'yes'"):  # DVC reads `yes` as a string too
        arch_settings(params_file, "bilstm")


def test_a_malformed_params_file_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    result = run_script("split", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml is not valid YAML")


def test_architectures_are_the_three_lists(params_file):
    apply_overrides(
        params_file, ["pretrained_architectures.lm=[lstm_lm]", "semi_supervised_architectures=[bilstm_mixed]"]
    )
    params = read_params(params_file)
    names = read_architectures(params_file)
    pretrained = params["pretrained_architectures"]
    assert (
        list(names)
        == params["architectures"] + pretrained["word2vec"] + pretrained["lm"] + params["semi_supervised_architectures"]
    )
    assert names["bilstm_mixed"] == "semi_supervised"
    assert stage_of("train", "bilstm_mixed", 11, params_file) == "train_semi_supervised@bilstm_mixed-11"
    assert "pretrain_lm" not in names and "pretrain_embeddings" not in names  # sections with a cell, not models
    assert names["bilstm_w2v_adv"] == "word2vec" and names["lstm_lm"] == "lm" and names["gru"] == "none"
    assert stage_of("train", "bilstm_w2v_adv", 7, params_file) == "train_word2vec@bilstm_w2v_adv-7"
    assert stage_of("evaluate", "lstm_lm", 7, params_file) == "evaluate_lm@lstm_lm-7"
    assert stage_of("evaluate", "gru", params_path=params_file) == "evaluate@gru-42"  # the first seed
    apply_overrides(params_file, ["architectures=[gru,nosuch]"])
    with pytest.raises(PipelineError, match="'nosuch' is listed .* but has no section"):
        read_architectures(params_file)


@pytest.mark.parametrize(
    "seeds, fragment",
    [
        ("[]", "non-empty list of integers"),
        ("[42,abc]", "non-empty list of integers"),
        ("[1.5]", "non-empty list of integers"),
        ("[-1]", "non-empty list of integers"),
        ("[42,7,42]", "names a seed twice: [42, 7, 42]"),
        ("42", "non-empty list"),
    ],
)
def test_a_bad_seed_list_is_a_one_line_error_before_any_work(params_file, seeds, fragment):
    apply_overrides(params_file, [f"seeds={seeds}"])
    with pytest.raises(PipelineError, match="parameter seeds") as err:
        arch_settings(params_file, "gru", 42)
    assert fragment in str(err.value)


def test_each_seed_trains_with_its_own_seed(params_file):
    apply_overrides(params_file, ["seeds=[42,7,11]"])
    assert read_seeds(params_file) == [42, 7, 11]
    assert arch_settings(params_file, "gru", 7)[1].seed == 7
    assert arch_settings(params_file, "gru")[1].seed == 42  # no seed given: the first


def test_the_best_seed_is_chosen_by_validation_and_ties_go_to_the_first_listed():
    assert best_by_validation({42: 0.88, 7: 0.89, 11: 0.87}) == 7
    assert best_by_validation({42: 0.88, 7: 0.88}) == 42
    assert best_by_validation({7: 0.88, 42: 0.88}) == 7
