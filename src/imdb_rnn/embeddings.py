"""Word2Vec word vectors learnt on the training and unlabelled reviews, one row per vocabulary id.

The result is an embedding matrix the models can start from: row i is the vector of vocabulary
word i, so it drops straight into an nn.Embedding built on data/vocab/vocab.txt. The test
reviews are never read, so pretraining cannot leak anything about the held-out set.
"""

import time

import numpy as np
import pyarrow.compute as pc
import torch

from .ingest import read_table
from .params import Param, load_section
from .pipeline import PipelineError, write_json
from .pretrained import save_pretrained
from .text import PAD_ID, UNK_ID, encode, read_vocab, split_words, vocab_sha256

SCHEMA = {
    "dim": Param(int, min=1, max=4096),
    "window": Param(int, min=1, max=100),
    "min_count": Param(int, min=1),
    "sg": Param(int, choices=(0, 1)),  # 0 = CBOW, 1 = skip-gram (about 4x slower)
    "negative": Param(int, min=1, max=100),
    "epochs": Param(int, min=1, max=1000),
    "workers": Param(int, min=1, max=64),  # 1 only (check_settings): gensim is reproducible only with one worker thread
    "seed": Param(int, min=0, max=2**31 - 1),
    "sources": Param(list),
}
SOURCES = ("train", "unsup")
PROBES = ("good", "bad", "great", "awful", "boring")  # nearest neighbours reported as a sanity check
NEIGHBOURS = 5


def check_settings(params):
    """The checks of the pretrain_embeddings section beyond its schema. Raises PipelineError for test reviews
    among the sources, or for more than one worker: gensim's worker threads interleave their batches
    in whatever order they finish, so two runs on the same text and seed give different vectors (and
    every model trained from them differs too)."""
    check_sources(params["sources"])
    if params["workers"] != 1:
        raise PipelineError(
            f"parameter pretrain_embeddings.workers is {params['workers']}: gensim's word2vec is reproducible "
            "only with one worker thread (more interleave batches by timing, so each run gives other "
            "vectors and other models downstream); set workers: 1"
        )
    return params


def check_sources(sources, param="pretrain_embeddings.sources"):
    """The review splits a pretraining stage learns from; 'test' is refused so that the test set stays unseen."""
    if "test" in sources:
        raise PipelineError(
            f"parameter {param} contains 'test': the test reviews must stay unseen, use only {list(SOURCES)}"
        )
    if not sources or any(s not in SOURCES for s in sources) or len(set(sources)) != len(sources):
        raise PipelineError(f"parameter {param} must be a non-empty list drawn from {list(SOURCES)}, got {sources!r}")
    return list(sources)


def load_corpus(reviews_path, vocab, sources, seed):
    """The reviews of `sources` as lists of words, out-of-vocabulary words replaced by '<unk>'.

    Replacing (rather than dropping) unknown words keeps every context window as wide as it is
    in the text the models see, and makes gensim's vocabulary a subset of ours. The reviews are
    shuffled with `seed` because the parquet file holds them grouped by split and label, and
    Word2Vec's learning rate decays over the corpus order.
    Returns (sentences, stats) with stats = {reviews, tokens, unk_tokens}.
    """
    table = read_table(reviews_path, columns=["split", "text"])
    part = table.filter(pc.is_in(table["split"], value_set=pc.cast(sources, table["split"].type)))
    if part.num_rows == 0:
        raise PipelineError(f"{reviews_path} has no {'/'.join(sources)} reviews: check the ingest report (dvc repro)")
    words, lengths = split_words(part["text"])
    ids = encode(words, vocab)
    tokens = np.array(vocab, dtype=object)[ids]  # each vocab string object shared, not copied
    starts = np.cumsum(lengths) - lengths
    order = np.random.default_rng(seed).permutation(len(lengths))
    sentences = [tokens[starts[i] : starts[i] + lengths[i]].tolist() for i in order if lengths[i]]
    stats = {"reviews": int(part.num_rows), "tokens": int(len(ids)), "unk_tokens": int((ids == UNK_ID).sum())}
    return sentences, stats


def _epoch_logger(total_epochs, tokens, log):
    """A gensim callback that prints one line per epoch with its speed."""
    from gensim.models.callbacks import CallbackAny2Vec

    class EpochLog(CallbackAny2Vec):
        def __init__(self):
            self.epoch, self.seconds = 0, []

        def on_epoch_begin(self, model):
            self.start = time.perf_counter()

        def on_epoch_end(self, model):
            seconds = time.perf_counter() - self.start
            self.epoch += 1
            self.seconds.append(seconds)
            log(
                f"pretrain_embeddings: epoch {self.epoch}/{total_epochs}  {tokens / 1e6:.2f}M words  "
                f"{seconds:.1f} s  {tokens / max(seconds, 1e-9) / 1e3:.0f}k words/s"
            )

    return EpochLog()


def train_word2vec(sentences, params, log=print):
    """Train gensim Word2Vec on `sentences` (a list of word lists); return (model, timing).

    With workers=1 and a fixed seed the result is identical run after run: gensim 4.4 draws its
    initial vectors from numpy's generator seeded by `seed` (not from Python's salted string
    hash), keeps its vocabulary in corpus order, and one thread consumes the batches in order.
    More workers are faster but interleave batches nondeterministically.
    """
    from gensim.models import Word2Vec

    tokens = sum(len(s) for s in sentences)
    model = Word2Vec(
        vector_size=params["dim"],
        window=params["window"],
        min_count=params["min_count"],
        sg=params["sg"],
        hs=0,
        negative=params["negative"],
        epochs=params["epochs"],
        workers=params["workers"],
        seed=params["seed"],
    )
    model.build_vocab(sentences)
    callback = _epoch_logger(params["epochs"], tokens, log)
    start = time.perf_counter()
    effective, raw = model.train(
        sentences,
        total_examples=model.corpus_count,
        total_words=model.corpus_total_words,
        epochs=model.epochs,
        callbacks=[callback],
    )
    seconds = time.perf_counter() - start
    timing = {
        "seconds": round(seconds, 2),
        "words_processed": int(raw),  # every token of every epoch
        "words_trained": int(effective),  # after gensim's frequent-word downsampling
        "words_per_second": int(raw / max(seconds, 1e-9)),
        "epoch_seconds": [round(s, 2) for s in callback.seconds],
    }
    return model, timing


def embedding_matrix(wv, vocab, seed):
    """float32 [len(vocab), dim]: row i = the vector of vocab word i; return (matrix, missing words).

    <pad> is all zeros (it stands for no word). Vocabulary words gensim never trained (absent
    from these reviews, or under min_count) get seeded normal vectors with the same standard
    deviation as the trained ones, so that they neither dominate nor vanish.
    """
    dim = wv.vector_size
    matrix = np.zeros((len(vocab), dim), np.float32)
    covered = np.array([w in wv.key_to_index for w in vocab])
    covered[PAD_ID] = False
    rows = np.flatnonzero(covered)
    if len(rows):
        matrix[rows] = wv.vectors[[wv.key_to_index[vocab[i]] for i in rows]]
    missing = np.flatnonzero(~covered)
    missing = missing[missing != PAD_ID]
    scale = float(matrix[rows].std()) if len(rows) else 1.0 / dim
    rng = np.random.default_rng(seed)
    matrix[missing] = rng.normal(0.0, scale, (len(missing), dim)).astype(np.float32)
    return matrix, [vocab[i] for i in missing]


def nearest_neighbours(matrix, vocab, words, usable, k=NEIGHBOURS):
    """{word: {neighbour: cosine}}: the k most similar usable words of each of `words` in vocab.

    `usable` masks the rows that may be neighbours (trained words, not <pad>/<unk>), so a random
    vector or the unknown-word token never appears as a 'synonym'.
    """
    index = {w: i for i, w in enumerate(vocab)}
    norms = np.linalg.norm(matrix, axis=1)
    unit = matrix / np.maximum(norms, 1e-12)[:, None]
    result = {}
    for word in words:
        i = index.get(word)
        if i is None or not usable[i]:
            continue
        sims = unit @ unit[i]
        sims[~usable] = -np.inf
        sims[i] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        result[word] = {vocab[j]: round(float(sims[j]), 3) for j in top if np.isfinite(sims[j])}
    return result


def pretrain(reviews_path, vocab, params, log=print):
    """The whole stage without file output: return (matrix, report)."""
    sources = check_sources(params["sources"])
    start = time.perf_counter()
    sentences, stats = load_corpus(reviews_path, vocab, sources, params["seed"])
    if stats["tokens"] == 0:
        raise PipelineError(f"the {'/'.join(sources)} reviews in {reviews_path} hold no words: rerun the clean stage")
    log(f"pretrain_embeddings: {stats['reviews']} reviews ({'+'.join(sources)}), {stats['tokens']} words")
    model, timing = train_word2vec(sentences, params, log)
    del sentences
    matrix, missing = embedding_matrix(model.wv, vocab, params["seed"])
    usable = np.array([w in model.wv.key_to_index for w in vocab])
    usable[[PAD_ID, UNK_ID]] = False
    report = {
        "vocab_size": len(vocab),
        "dim": params["dim"],
        "sources": sources,
        **stats,
        # covered + missing + 1 (<pad>) = vocab_size; <unk> counts as covered when it occurs
        "words_covered": len(vocab) - 1 - len(missing),  # vocab rows holding a trained vector
        "words_missing": len(missing),  # vocab words given a random vector instead
        "missing_examples": missing[:20],
        **timing,
        "seconds_total": round(time.perf_counter() - start, 2),
        "neighbours": nearest_neighbours(matrix, vocab, PROBES, usable),
    }
    return matrix, report


def pretrain_embeddings(params_path, paths):
    """The pretrain_embeddings stage: word2vec vectors for the vocabulary, learnt on train + unlabelled reviews only.

    `paths` maps reviews, vocab, out, metrics to files, as dvc.yaml names them.
    """

    params = check_settings(load_section(params_path, "pretrain_embeddings", SCHEMA))  # before any reading
    vocab = read_vocab(paths["vocab"])
    matrix, report = pretrain(paths["reviews"], vocab, params)
    save_pretrained(
        paths["out"], "word2vec", {"dim": int(matrix.shape[1])}, torch.from_numpy(matrix), vocab_sha256(vocab)
    )
    write_json(paths["metrics"], report)
    print(
        f"pretrain_embeddings: {matrix.shape[0]} x {matrix.shape[1]} float32, {report['words_covered']} trained, "
        f"{report['words_missing']} random, {report['seconds']} s ({report['words_per_second']} words/s) "
        f"-> {paths['out']}"
    )
    for word, near in report["neighbours"].items():
        print(f"  {word}: {', '.join(f'{w} {s:.2f}' for w, s in near.items())}")
