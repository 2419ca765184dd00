"""Score new reviews with a trained checkpoint: the library behind `imdb-predict` (predict_cli.py).

A checkpoint carries everything needed to read new text the way training did: the cleaning
settings, the vocabulary and the padding/truncation settings. `Predictor` applies exactly those
(text.tokenize, then batches.align_left), scores reviews in large length-sorted batches, and for
attention models returns the attention weight of every word the model read.

    from imdb_rnn.predict import Predictor
    predictor = Predictor.load("data/models/bilstm/seed42.pt")
    predictor.probabilities(["A wonderful film.", "Dull and far too long."])
"""

import copy
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batches import Reviews, align_left, by_length
from .checkpoint import load_checkpoint
from .inference import predict_logits
from .params import best_by_validation, check, checkpoint_path, first_seed, read_architectures, read_seeds, retrain_hint
from .pipeline import PipelineError, load
from .runtime import native_bfloat16, require_cell_precision, require_precision
from .text import (
    CLEAN_SCHEMA,
    RESERVED,
    TOKENIZE_SCHEMA,
    UNK_ID,
    as_arrow,
    check_truncation,
    clean_texts,
    kept_offsets,
    split_words,
    tokenize,
    without_known_words,
)

PRECISIONS = ("auto", "float32", "bfloat16", "int8")
# cleaning that changes nothing: for text that is already clean (data/clean/reviews.parquet)
NO_CLEANING = {"lowercase": False, "strip_html_breaks": False, "punctuation": "keep"}
DEFAULT_BATCH_SIZE = 64  # reviews per batch (and per lane): benchmarks/bench_predict.py, docs/benchmarks.md
MIN_LANE_BATCHES = 4  # batches each lane must get before scoring is split into lanes


@dataclass
class Explanation:
    """What an attention model read in one review and how much weight each word got."""

    probability: float  # of a positive review
    words: list  # the cleaned words the model read, in order (after truncation)
    weights: np.ndarray  # attention weight of each word (they sum to 1 over the words read)
    known: np.ndarray  # False where the word is not in the vocabulary (the model saw <unk>)
    n_words: int  # words in the whole cleaned review, before truncation

    @property
    def label(self):
        return label_of(self.probability)


def label_of(probability):
    # logit > 0 is a positive review, as in training's accuracy
    return "pos" if probability > 0.5 else "neg"


def unscorable_reason(n_words):
    """Why a review with no vocabulary word gets no probability, given its word count after cleaning."""
    return (
        "no words left after cleaning"
        if n_words == 0
        else f"none of its {n_words} word(s) is in the model's vocabulary"
    )


def resolve_precision(precision, device, cell=None):
    """`auto` is bfloat16 where the device has native bfloat16 and the model's registered `cell` (cells.Cell;
    None: any) runs in it (2.7x float32's speed on this project's CPU, but probabilities up to 0.035 away
    from float32's: docs/benchmarks.md), float32 elsewhere; any other precision is itself. Raises
    PipelineError for bfloat16 where the device only emulates it (several times slower than float32), and
    for a precision the cell has no version of (runtime.require_cell_precision)."""
    require_precision(precision, device, "precision")
    if cell is not None:
        require_cell_precision(precision, cell, "precision")
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(device) and (cell is None or cell.bfloat16) else "float32"


def apply_precision(model, precision):
    """Return the model to run: float32 as trained, bfloat16 weights, or int8 dynamic quantization.

    int8 quantizes the recurrent layers and the linear layers (weights to int8 once, activations
    per batch); a cell registered without an int8 version (nn.RNN has none) is refused, not left in
    float32. bfloat16 pays off on CPUs with AMX/AVX512-BF16 (oneDNN kernels) and on GPUs; `auto` picks by
    the model's device and cell (resolve_precision).
    """
    precision = resolve_precision(precision, next(model.parameters()).device, model.cell)
    if precision == "float32":
        return model
    if precision == "bfloat16":
        return copy.deepcopy(model).to(torch.bfloat16)
    if precision == "int8":
        if next(model.parameters()).device.type != "cpu":
            raise PipelineError("int8 quantization runs on the CPU only: add --device cpu")
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {*model.cell.int8, nn.Linear}, dtype=torch.qint8)
    raise PipelineError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")


def check_payload(payload, path):
    """The checkpoint's text settings must be complete before any review is read with them."""
    for key in ("vocab", "clean", "tokenize", "model_config"):
        if key not in payload:
            raise PipelineError(
                f"checkpoint {path} lacks '{key}': retrain it ({retrain_hint(path, payload.get('arch'))})"
            )
    try:
        check("clean", payload["clean"], CLEAN_SCHEMA)
        check_truncation(check("tokenize", payload["tokenize"], TOKENIZE_SCHEMA), "the checkpoint's tokenize")
    except PipelineError as err:
        raise PipelineError(f"checkpoint {path} has bad text settings ({err}): retrain it")
    vocab = payload["vocab"]
    if not isinstance(vocab, list) or vocab[: len(RESERVED)] != RESERVED or not all(isinstance(w, str) for w in vocab):
        raise PipelineError(f"checkpoint {path} has no valid vocabulary: retrain it")
    if len(vocab) != payload["model_config"].get("vocab_size"):
        raise PipelineError(
            f"checkpoint {path} has {len(vocab)} vocabulary entries but a model for "
            f"{payload['model_config'].get('vocab_size')}: retrain it"
        )


def lanes_for(lanes, n_reviews, batch_size, device):
    """How many scoring lanes to run: `lanes` if given (>= 1; at most one a review), else (0, auto) one
    per intra-op thread on a CPU when every lane gets at least MIN_LANE_BATCHES batches, else 1.
    Always 1 on a GPU."""
    if torch.device(device).type != "cpu":
        return 1
    if lanes:
        return max(1, min(lanes, n_reviews))
    threads = torch.get_num_threads()
    return threads if n_reviews >= threads * batch_size * MIN_LANE_BATCHES else 1


class Predictor:
    """A loaded model plus the text settings it was trained with.

    On a CPU, many reviews are scored in `lanes` threads with one intra-op thread each (0: one lane
    per torch thread, for inputs of at least MIN_LANE_BATCHES batches a lane). A recurrent step is a
    chain of small matrix products that a second thread speeds up little, while two lanes keep both
    cores busy: 1.2x to 1.3x the reviews/s of one lane with two threads (benchmarks/bench_predict.py).
    Each review's logit is the same up to float rounding whatever the lanes. Explanations (`explain`)
    are computed in one lane. Raises PipelineError for negative lanes.
    """

    def __init__(self, model, payload, device="cpu", precision="float32", batch_size=DEFAULT_BATCH_SIZE, lanes=0):
        if lanes < 0:
            raise PipelineError(f"lanes must be 0 (auto) or more, got {lanes}")
        self.payload = payload
        self.device = torch.device(device)
        self.precision = precision = resolve_precision(precision, self.device, model.cell)
        self.model = apply_precision(model.to(self.device).eval(), precision)
        self.batch_size = batch_size
        self.lanes = lanes

    @classmethod
    def load(cls, path, device="cpu", precision="float32", batch_size=DEFAULT_BATCH_SIZE, lanes=0):
        model, payload = load_checkpoint(path, device)
        check_payload(payload, path)
        return cls(model, payload, device, precision, batch_size, lanes)

    @property
    def arch(self):
        return self.payload.get("arch", "?")

    @property
    def has_attention(self):
        return self.payload["model_config"].get("pooling") == "attention"

    def encode(self, texts, cleaned=False):
        """Reviews (left-aligned ids, kept lengths) and full word counts, exactly as in training.

        cleaned=True reads text that the clean stage already cleaned, the way the tokenize stage did.
        """
        clean = NO_CLEANING if cleaned else self.payload["clean"]
        tok = self.payload["tokenize"]
        ids, kept, n_words = tokenize(texts, self.payload["vocab"], clean, tok)
        ids = align_left(ids, kept, tok["pad_side"])
        return Reviews(ids, kept, np.zeros(len(kept), np.float32)), n_words

    def logits(self, texts, cleaned=False):
        """The model's logit for each review, in the order given (> 0: positive), as the evaluate
        stage computes it: a review with no vocabulary word is read as one <unk>."""
        return self._run(list(texts), cleaned)[0]

    def probabilities(self, texts, cleaned=False):
        """Probability that each review is positive, in the order given; NaN for a review with no
        word in the vocabulary (text.without_known_words), which gives the model nothing to judge."""
        return self.score(texts, cleaned)[0]

    def score(self, texts, cleaned=False):
        """(probabilities as `probabilities` gives them, and for each review why it got NaN: no words
        after cleaning, or none the model knows; None where it was scored), from one pass over the text."""
        logits, empty, n_words = self._run(list(texts), cleaned)
        probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
        probs[empty] = np.nan
        return probs, [unscorable_reason(n) if e else None for e, n in zip(empty, n_words)]

    def _run(self, texts, cleaned):
        """(logits [N], no-known-word mask [N], word counts [N]) of `texts`, encoded and scored in one
        or more lanes (lanes_for): each lane encodes and scores its own share, so one lane's
        tokenizing overlaps another's scoring."""

        def share(rows, threads=None):
            if threads:  # per thread, as inference mode is: each lane thread sets its own
                torch.set_num_threads(threads)
                torch.set_flush_denormal(True)
            reviews, n_words = self.encode([texts[i] for i in rows], cleaned)
            with torch.inference_mode():
                logits = predict_logits(self.model, reviews, self.batch_size, self.device)
            return logits, without_known_words(reviews.ids), n_words

        lanes = lanes_for(self.lanes, len(texts), self.batch_size, self.device)
        if not texts or lanes == 1:
            return share(range(len(texts))) if texts else (np.zeros(0, np.float32), np.zeros(0, bool), [])
        # lane i gets every lanes-th review by length, so all lanes get the same mix of lengths
        order = np.argsort([len(t) for t in texts], kind="stable")
        shares = [order[i::lanes] for i in range(lanes)]
        logits, empty, n_words = (
            np.zeros(len(texts), np.float32),
            np.zeros(len(texts), bool),
            np.zeros(len(texts), np.int64),
        )
        threads = torch.get_num_threads()
        with ThreadPoolExecutor(lanes) as pool:
            for rows, (lane_logits, e, n) in zip(shares, pool.map(share, shares, [1] * lanes)):
                logits[rows], empty[rows], n_words[rows] = lane_logits, e, n
        # torch keeps a process-wide default beside each thread's own: keep a lane's 1 out of it
        torch.set_num_threads(threads)
        return logits, empty, n_words

    def explain(self, texts, cleaned=False):
        """An Explanation per review: probability and the attention weight of every word read."""
        if not self.has_attention:
            raise PipelineError(
                f"explanations need an attention model; this checkpoint is '{self.arch}' "
                f"(pooling {self.payload['model_config'].get('pooling')}): use --arch attention"
            )
        texts = list(texts)
        if not texts:
            return []
        texts = as_arrow(texts) if cleaned else clean_texts(texts, self.payload["clean"])
        reviews, n_words = self.encode(texts, cleaned=True)
        words, counts = split_words(texts)
        words = words.to_pylist()
        starts = np.cumsum(counts) - counts
        probs, weights = self._attention(reviews)
        out = []
        for i, (start, total, kept) in enumerate(zip(starts, counts, reviews.lengths)):
            # the words the model read: the same end of a long review that pad() kept
            kept = min(int(kept), int(total))  # an empty review is read as one <unk> with no word to show
            tok = self.payload["tokenize"]
            positions = start + kept_offsets([total], [kept], tok["truncate_side"], tok.get("head_tokens", 0))
            out.append(
                Explanation(
                    probability=float(probs[i]),
                    words=[words[p] for p in positions],
                    weights=weights[i][:kept],
                    known=reviews.ids[i, :kept] != UNK_ID,
                    n_words=int(n_words[i]),
                )
            )
        return out

    def _attention(self, reviews):
        probs = np.zeros(len(reviews), np.float32)
        weights = [None] * len(reviews)
        with torch.inference_mode():
            for rows in by_length(reviews.lengths, self.batch_size):
                ids, lengths, _ = reviews.batch(rows, self.device)
                logits, attention = self.model(ids, lengths, return_attention=True)
                probs[rows] = torch.sigmoid(logits.float()).cpu().numpy()
                attention = attention.float().cpu().numpy()
                for row, a, n in zip(rows, attention, reviews.lengths[rows]):
                    weights[row] = a[:n]
        return probs, weights


def seed_checkpoints(arch, models_dir="data/models"):
    """{seed: path} of every checkpoint the train stages wrote for `arch` (models_dir/arch/seed<seed>.pt)."""
    found = {}
    for path in sorted(Path(models_dir, arch).glob("seed*.pt")):
        if path.stem[4:].isdigit():
            found[int(path.stem[4:])] = path
    return found


def best_seed_checkpoint(arch, models_dir="data/models", seed=None, params="params.yaml"):
    """`arch`'s checkpoint for `seed`, or else its seed with the best validation accuracy, as the
    leaderboard picks: among params.yaml's seeds, in their order (ties go to the first), each
    checkpoint's own recorded validation accuracy. Without a readable params.yaml, among every
    checkpoint there. Returns models_dir/arch/seed<seed>.pt; raises PipelineError for a seed that
    params.yaml does not list, or a checkpoint that records no validation accuracy. Warns (UserWarning)
    when some of params.yaml's seeds have no checkpoint: the choice is then among the others.
    """
    try:
        seeds = read_seeds(params)
    except PipelineError:
        seeds = None
    if seed is not None:
        if seeds is not None and seed not in seeds:
            raise PipelineError(
                f"seed {seed} is not among {params}'s seeds {seeds}: pick one of them, or add it and run dvc repro"
            )
        return checkpoint_path(models_dir, arch, seed)
    found = seed_checkpoints(arch, models_dir)
    if seeds is not None:
        missing = [s for s in seeds if s not in found]
        found = {s: found[s] for s in seeds if s in found}
        if missing and found:
            # the choice is then among fewer seeds than the leaderboard's: say so rather than choose quietly
            warnings.warn(
                f"{params} lists seed(s) {', '.join(map(str, missing))} for {arch} with no checkpoint in "
                f"{Path(models_dir, arch)}: choosing among seed(s) {', '.join(map(str, found))} "
                "(run dvc repro to train the others)",
                stacklevel=2,
            )
    if len(found) <= 1:
        return next(iter(found.values()), None) or checkpoint_path(
            models_dir, arch, seeds[0] if seeds else first_seed()
        )
    val = {}
    for s, path in found.items():
        payload = load(
            path,
            "checkpoint",
            lambda p: torch.load(p, map_location="cpu", weights_only=True, mmap=True),
            make="",
            remake=f"retrain it ({retrain_hint(path, arch)})",
        )
        val[s] = (payload.get("metrics") or {}).get("val_accuracy") if isinstance(payload, dict) else None
        if val[s] is None:
            raise PipelineError(
                f"checkpoint {path} records no validation accuracy to choose a seed by: retrain it "
                f"({retrain_hint(path, arch)}) or pass --seed"
            )
    return found[best_by_validation(val)]


def load_predictor(
    arch=None,
    seed=None,
    model=None,
    device="cpu",
    precision="float32",
    models_dir="data/models",
    leaderboard="metrics/leaderboard.json",
    params="params.yaml",
    **options,
):
    """A Predictor for new text, chosen as imdb-predict chooses (resolve_checkpoint): the checkpoint at `model`;
    else architecture `arch` at `seed`, or at its best seed by validation; else the leaderboard's best
    recurrent model by validation accuracy (never by test). Paths are relative to the project root.

        from imdb_rnn import load_predictor
        load_predictor().probabilities(["A wonderful film."])     # array([0.97...], dtype=float32)

    `options` go to Predictor (batch_size, lanes). Raises PipelineError with the fix for a missing or bad
    checkpoint, an unknown architecture, or a precision the device or the cell lacks."""
    path = resolve_checkpoint(model, arch, models_dir, leaderboard, params, seed)
    return Predictor.load(path, device=device, precision=precision, **options)


def resolve_checkpoint(
    model=None,
    arch=None,
    models_dir="data/models",
    leaderboard="metrics/leaderboard.json",
    params="params.yaml",
    seed=None,
):
    """The checkpoint to use: --model, else --arch (its best seed by validation, or --seed), else the
    leaderboard's recurrent row with the best validation accuracy (ties go to the higher rank): the
    test set ranks the leaderboard but never picks the model that labels new text.

    An --arch with no checkpoint that params.yaml does not list either is a misspelling, reported as such.
    """
    if model:
        return Path(model)
    if arch:
        if not Path(models_dir, arch).exists() and Path(params).exists():
            known = list(read_architectures(params))
            if arch not in known:
                raise PipelineError(f"unknown architecture {arch!r}: {params} lists {', '.join(known)}")
        return best_seed_checkpoint(arch, models_dir, seed, params)
    path = Path(leaderboard)
    if not path.exists():
        raise PipelineError(
            f"no model chosen and {path} is missing (the compare stage makes it): pass --arch NAME "
            f"(checkpoints under {models_dir}/NAME/, e.g. --arch bilstm) or --model PATH"
        )
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
        rows = board["rows"] if isinstance(board, dict) else board  # the compare stage wraps its rows
        # the recurrent models: each row names its checkpoint (its best seed), the n-gram baseline none
        if rows and not any("checkpoint" in row for row in rows):
            raise PipelineError(
                f"{path} comes from before seeds (its rows name no checkpoint): rerun `dvc repro compare`, "
                "or pass --arch NAME"
            )
        recurrent = [row for row in rows if row.get("checkpoint")]
        if any(not isinstance(row.get("val_accuracy"), (int, float)) for row in recurrent):
            raise PipelineError(
                f"{path} has a row without a validation accuracy to choose by: rerun `dvc repro compare`, "
                "or pass --arch NAME"
            )
        best = recurrent[best_by_validation({i: row["val_accuracy"] for i, row in enumerate(recurrent)})]
        if not isinstance(best["arch"], str) or not best["arch"]:
            raise TypeError
        checkpoint = best["checkpoint"] if seed is None else checkpoint_path(models_dir, best["arch"], seed)
    except (ValueError, UnicodeDecodeError, LookupError, TypeError, StopIteration, AttributeError):
        raise PipelineError(
            f"{path} is not a leaderboard (rows with an 'arch' and a 'checkpoint', best first): pass --arch NAME"
        )
    return Path(checkpoint)
