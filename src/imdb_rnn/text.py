"""Text processing shared by the pipeline and the predict command: clean, count, map to ids, pad.

Everything runs as Arrow compute kernels (C++) over chunks of reviews on all cores, so one
implementation serves 100,000 reviews in a stage and a single sentence in `imdb-predict`.
"""

import hashlib
import html
import re
import string
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .params import Param
from .pipeline import PipelineError, load, usable_cores

PAD_ID, UNK_ID = 0, 1
RESERVED = ["<pad>", "<unk>"]

CLEAN_SCHEMA = {
    # typographic and web text read as typed (see normalize); absent in checkpoints made before it: off
    "normalize": Param(bool, required=False),
    "lowercase": Param(bool),
    "strip_html_breaks": Param(bool),
    "punctuation": Param(str, choices=("remove", "space", "keep")),
}
TOKENIZE_SCHEMA = {
    "seq_len": Param(int, min=1, max=100_000),
    "pad_side": Param(str, choices=("left", "right")),
    # which end of a long review is cut: right keeps the head, left the tail, both the first
    # head_tokens and the rest from the tail (a verdict often sits in the last sentences)
    "truncate_side": Param(str, choices=("left", "right", "both")),
    "head_tokens": Param(int, min=0, max=100_000, required=False),  # truncate_side: both only
}


def check_truncation(settings, where="tokenize"):
    """The tokenize settings, refused when truncate_side is both without head_tokens (PipelineError)."""
    if settings["truncate_side"] == "both" and "head_tokens" not in settings:
        raise PipelineError(
            f"parameter {where}.head_tokens is missing: truncate_side: both keeps that many tokens "
            "of a long review's head and the rest from its tail"
        )
    return settings


def kept_offsets(lengths, kept, truncate_side, head_tokens=0):
    """The positions, within each review, of the tokens a truncation keeps: flat int64 [sum(kept)], review by review.

    `lengths` [N] are the reviews' token counts, `kept` [N] how many are kept (at most the length).
    right keeps positions 0..kept-1, left the last `kept`, both the first head_tokens and then the
    last kept - head_tokens. One rule for pad (tokenize), cut (a shorter seq_len) and predict's
    explanations, so all three keep the same words.
    """
    lengths, kept = np.asarray(lengths, np.int64), np.asarray(kept, np.int64)
    within = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    dropped = np.repeat(lengths - kept, kept)
    if truncate_side == "right":
        return within
    if truncate_side == "left":
        return within + dropped
    return within + dropped * (within >= head_tokens)


# string.punctuation, as in the exercise; escaped for RE2 inside a character class
_PUNCT_CLASS = "[" + "".join("\\" + c for c in string.punctuation) + "]"
# with normalize: every Unicode punctuation mark and symbol (a superset of string.punctuation)
_UNICODE_PUNCT_CLASS = r"[\p{P}\p{S}]"
_BREAK = r"(?i)<br\s*/?>"  # <br />, <br>, <BR/>...

# Typographic marks typed by word processors and phones, as the ASCII a person means by them.
_QUOTES = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4\u0060", "'"),  # ' ' ‚ ‛ ′ ´ `: didn’t, didn´t
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\u00a8", '"'),  # “ ” „ ‟ ″ « » ¨
    **dict.fromkeys("\u2010\u2011\u2012\u2212", "-"),  # hyphens and minus, as ASCII's hyphen
    # en/em dashes and the ellipsis separate words ("great\u2014really"): spaced, so removing them glues nothing
    **dict.fromkeys("\u2013\u2014\u2015", " - "),
    "\u2026": " ... ",
    "\u00b8": ",",  # cedilla used as a comma
}
# Windows-1252 text read as Latin-1 leaves C1 control characters (aclImdb holds thousands: \x96 for
# an en dash, \x85 for an ellipsis, \x92 for an apostrophe): read them as the Windows-1252 marks they were.
_C1 = {chr(b): bytes([b]).decode("cp1252", errors="replace") for b in range(0x80, 0xA0)}
_TYPOGRAPHY = str.maketrans(
    {
        **{c1: " " if mark == "\ufffd" else _QUOTES.get(mark, mark) for c1, mark in _C1.items()},
        **_QUOTES,
        # invisible characters glue words together: byte-order mark, soft hyphen, zero-width and bidi marks
        **dict.fromkeys("\ufeff\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\u202a\u202b\u202c\u202d\u202e", ""),
    }
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff]")  # controls and private-use glyphs


def normalize_text(text):
    """One review as typed: HTML entities decoded (&amp; &#39; &#8217;), typographic quotes, dashes and
    Windows-1252 leftovers made ASCII, invisible characters removed, then Unicode NFKC (… -> ..., ﬁ -> fi,
    full-width letters -> ASCII, no-break space -> space). ASCII text without '&' comes back unchanged.
    """
    text = html.unescape(text).translate(_TYPOGRAPHY)
    return _CONTROL.sub(" ", unicodedata.normalize("NFKC", text))


def _threads():
    # the cores this process may use (a stage pinned to one core gets one), at most 8
    return max(1, min(8, usable_cores()))


def _chunks(array, n):
    """Split an Arrow array into about n contiguous slices (zero-copy)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    size = max(1, -(-len(array) // n))
    return [array.slice(i, size) for i in range(0, len(array), size)] or [array]


def _parallel(fn, array):
    parts = _chunks(array, _threads())
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:  # Arrow kernels release the GIL
        return list(pool.map(fn, parts))


def as_arrow(texts):
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts
    return pa.array(list(texts), pa.string())


def _normalize(a):
    """normalize_text over an Arrow array, in Python only for the reviews it can change."""
    touched = pc.or_(pc.invert(pc.string_is_ascii(a)), pc.match_substring(a, "&"))
    texts = a.filter(touched).to_pylist()
    if not texts:
        return a
    return pc.replace_with_mask(a, touched, pa.array([normalize_text(t) for t in texts], pa.string()))


def clean_texts(texts, settings):
    """Clean reviews as `settings` (the clean section of params.yaml) says; return an Arrow array.

    Order: normalize (when set), remove <br /> breaks, lowercase, then punctuation. With normalize,
    punctuation means every Unicode punctuation mark and symbol, not only ASCII's.
    """
    normalize = settings.get("normalize", False)
    punct = _UNICODE_PUNCT_CLASS if normalize else _PUNCT_CLASS

    def clean(a):
        if normalize:
            a = _normalize(a)
        if settings["strip_html_breaks"]:
            a = pc.replace_substring_regex(a, _BREAK, " ")
        if settings["lowercase"]:
            a = pc.utf8_lower(a)
        if settings["punctuation"] != "keep":
            a = pc.replace_substring_regex(a, punct, "" if settings["punctuation"] == "remove" else " ")
        return a

    return pa.chunked_array(_parallel(clean, as_arrow(texts)), pa.string())


def split_words(cleaned):
    """Whitespace-split cleaned reviews: (flat Arrow array of words, numpy word count per review).

    Arrow yields an empty word for whitespace at either end of a text and for an empty text,
    where Python's str.split() yields none; those are dropped, and the counts follow.
    """

    def split(a):
        lists = pc.utf8_split_whitespace(a)
        words = pc.list_flatten(lists)
        real = pc.not_equal(words, "")
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        mask = real.to_numpy(zero_copy_only=False)
        return pc.filter(words, real), np.bincount(parents[mask], minlength=len(a))

    parts = _parallel(split, cleaned)
    words = pa.chunked_array([w for w, _ in parts], pa.string())
    lengths = np.concatenate([n for _, n in parts])
    return words, lengths.astype(np.int64)


def count_words(words):
    """Word counts as a table (word, count), most common first, ties broken alphabetically."""
    parts = _parallel(pc.value_counts, words)
    table = (
        pa.Table.from_batches(
            [pa.RecordBatch.from_struct_array(p).rename_columns(["word", "count"]) for p in parts if len(p)]
        )
        if any(len(p) for p in parts)
        else pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    )
    table = table.group_by("word").aggregate([("count", "sum")]).rename_columns(["word", "count"])
    return table.sort_by([("count", "descending"), ("word", "ascending")])


def build_vocab(counts, max_size, min_freq):
    """Vocabulary list: <pad>, <unk>, then the most frequent words (count >= min_freq), max_size in all."""
    keep = counts.filter(pc.greater_equal(counts["count"], min_freq))
    words = [w for w in keep["word"].to_pylist() if w not in RESERVED]
    return RESERVED + words[: max(0, max_size - len(RESERVED))]


def encode(words, vocab):
    """Map a flat array of words to int32 ids; unknown words get UNK_ID, never the padding id."""
    value_set = pa.array(vocab[len(RESERVED) :], pa.string())

    def lookup(a):
        idx = pc.index_in(a, value_set=value_set)
        return pc.fill_null(pc.add(idx, len(RESERVED)), UNK_ID).to_numpy(zero_copy_only=False)

    if len(words) == 0:
        return np.zeros(0, np.int32)
    return np.concatenate(_parallel(lookup, words)).astype(np.int32)


def pad(ids, lengths, seq_len, pad_side="left", truncate_side="right", head_tokens=0):
    """Pad or truncate each review to seq_len; return (matrix [N, seq_len] int32, kept lengths).

    `ids` is the flat id array of all reviews, `lengths` their word counts. truncate_side says
    which part of a long review is kept ('right' keeps the head, as the exercise does; see
    kept_offsets). A review with no words at all becomes one unknown-word token so that every
    row has a last real token.
    """
    lengths = np.asarray(lengths, np.int64)
    n = len(lengths)
    kept = np.minimum(lengths, seq_len)
    src_start = np.cumsum(lengths) - lengths  # where each review starts in `ids`
    dst_col = seq_len - kept if pad_side == "left" else np.zeros(n, np.int64)
    # one scatter over the kept tokens only (not N x seq_len): row, column and source of each
    total = int(kept.sum())
    rows = np.repeat(np.arange(n), kept)
    within = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
    source = np.repeat(src_start, kept) + kept_offsets(lengths, kept, truncate_side, head_tokens)
    out = np.zeros((n, seq_len), np.int32)
    out[rows, np.repeat(dst_col, kept) + within] = ids[source]
    empty = kept == 0
    out[empty, seq_len - 1 if pad_side == "left" else 0] = UNK_ID
    kept = np.maximum(kept, 1)
    return out, kept.astype(np.int32)


def without_known_words(ids):
    """Per row of a padded id matrix [N, seq_len]: True where no token read is a vocabulary word.

    Such a review (empty after cleaning, or only unknown words) gives the model nothing to read but
    <unk>: the pipeline counts these, training leaves them out, and predict gives them no probability.
    """
    return ~(np.asarray(ids) > UNK_ID).any(axis=1)


def tokenize(texts, vocab, clean_settings, tok_settings):
    """Raw texts to (padded ids, kept lengths, full word counts), exactly as the pipeline does it."""
    words, lengths = split_words(clean_texts(texts, clean_settings))
    ids = encode(words, vocab)
    matrix, kept = pad(
        ids,
        lengths,
        tok_settings["seq_len"],
        tok_settings["pad_side"],
        tok_settings["truncate_side"],
        tok_settings.get("head_tokens", 0),
    )
    return matrix, kept, lengths


def vocab_sha256(vocab):
    """The hash that ties tokens, checkpoints and pretraining outputs to one vocabulary (of vocab.txt's text)."""
    return hashlib.sha256(("\n".join(vocab) + "\n").encode()).hexdigest()


def read_vocab(path):
    """The vocabulary file as a list (line number = id); a one-line PipelineError when missing or malformed."""
    words = load(
        path,
        "vocabulary",
        lambda p: p.read_text(encoding="utf-8").split("\n"),
        make="run the vocab stage (dvc repro)",
        errors=(UnicodeDecodeError, OSError),
    )
    if words and words[-1] == "":
        words.pop()
    if words[: len(RESERVED)] != RESERVED:
        raise PipelineError(f"vocabulary {path} does not start with {RESERVED}: rerun the vocab stage")
    return words
