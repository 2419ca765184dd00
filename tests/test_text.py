"""Text processing: cleaning, counting, vocabulary, ids and padding, against a pure-Python reference."""

import os
import random
import re
import string
import unicodedata
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from imdb_rnn import text
from imdb_rnn.text import (
    PAD_ID,
    UNK_ID,
    build_vocab,
    clean_texts,
    count_words,
    encode,
    normalize_text,
    pad,
    split_words,
    tokenize,
)

EXERCISE = {"lowercase": True, "strip_html_breaks": True, "punctuation": "remove"}


def clean(texts, **settings):
    return clean_texts(texts, {**EXERCISE, **settings}).to_pylist()


def counts_table(pairs):
    words, counts = zip(*pairs) if pairs else ((), ())
    return pa.table({"word": pa.array(words, pa.string()), "count": pa.array(counts, pa.int64())})


# --- a plain-Python reference: what the pipeline must compute ------------------------------------


def ref_clean(text, settings):
    normalize = settings.get("normalize", False)
    if normalize:
        text = normalize_text(text)
    if settings["strip_html_breaks"]:
        text = re.sub(r"<br\s*/?>", " ", text)
    if settings["lowercase"]:
        text = text.lower()
    # normalized text loses every Unicode punctuation mark and symbol, the exercise's only ASCII's
    punct = (lambda c: unicodedata.category(c)[0] in "PS") if normalize else (lambda c: c in string.punctuation)
    if settings["punctuation"] == "remove":
        text = "".join(c for c in text if not punct(c))
    elif settings["punctuation"] == "space":
        text = "".join(" " if punct(c) else c for c in text)
    return text


def ref_counts(texts):
    counts = Counter(w for t in texts for w in t.split())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def ref_vocab(sorted_counts, max_size, min_freq):
    words = [w for w, c in sorted_counts if c >= min_freq and w not in ("<pad>", "<unk>")]
    return ["<pad>", "<unk>"] + words[: max_size - 2]


def ref_tokenize(texts, vocab, seq_len, pad_side, truncate_side):
    index = {w: i for i, w in enumerate(vocab) if i >= 2}  # the reserved entries are never looked up
    rows, kept = [], []
    for review in texts:
        ids = [index.get(w, UNK_ID) for w in review.split()]
        if len(ids) > seq_len:
            ids = ids[:seq_len] if truncate_side == "right" else ids[-seq_len:]
        ids = ids or [UNK_ID]
        padding = [PAD_ID] * (seq_len - len(ids))
        rows.append(padding + ids if pad_side == "left" else ids + padding)
        kept.append(len(ids))
    return np.array(rows, np.int32).reshape(len(texts), seq_len), np.array(kept)


POOL = (
    "good bad movie film Great AWFUL don't it's well... (really) \"quoted\" 10/10 $5 a-b café ÉLAN straße "
    "niño x y z the THE The plot! actor's <pad> <unk> ok? didn\u2019t \u201cfine\u201d Tom&amp;Jerry &#39;s \ufeffBOM "
    "great\u2014really wait\u2026 \x96 \x92s £5 ¡hola! \u00bd \uff27ood \ufb01lm \U0001f600 \u2605\u2605"
).split()
BREAKS = ["<br />", "<br/>", "<br>", "<br  />", "<br /><br />"]
SPACES = [" ", " ", " ", "  ", "\n", "\t", "\xa0"]


def random_text(rng):
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.1:
        return rng.choice(["!!!", " ... ", "<br />", "\n"])  # nothing left after cleaning
    parts = []
    for _ in range(rng.randint(1, 40)):
        parts.append(rng.choice(BREAKS) if rng.random() < 0.08 else rng.choice(POOL))
        parts.append(rng.choice(SPACES) if rng.random() < 0.9 else "")
    return "".join(parts)


# --- cleaning ------------------------------------------------------------------------------------


def test_lowercase_and_break_removal():
    assert clean(["Great<br /><br />Film"]) == ["great  film"]
    assert clean(["A<br/>B<br>C<br  />D"]) == ["a b c d"]
    assert clean(["Great<br />Film"], lowercase=False) == ["Great Film"]
    # without break stripping the tag's letters stay, as in the exercise ("br")
    assert clean(["Great<br />Film"], strip_html_breaks=False) == ["greatbr film"]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("remove", "dont stop its 1010 ab"),
        ("space", "don t stop  it s 10 10 a b"),
        ("keep", "don't stop! it's 10/10 a-b"),
    ],
)
def test_punctuation_modes(mode, expected):
    assert clean(["Don't STOP! It's 10/10 a-b"], punctuation=mode) == [expected]


def test_every_ascii_punctuation_mark_removed_and_nothing_else():
    assert clean([string.punctuation + " keep é ß 42"]) == [" keep é ß 42"]


# --- counting and vocabulary ---------------------------------------------------------------------


def test_split_words_like_str_split():
    texts = ["a b", " a  b ", "", "   ", "a\n", "\tx\xa0y\u2003z "]
    words, lengths = split_words(pa.chunked_array([texts]))
    assert words.to_pylist() == [w for t in texts for w in t.split()]
    assert lengths.tolist() == [len(t.split()) for t in texts]


def test_counts_most_common_first_ties_alphabetical():
    words, lengths = split_words(clean_texts(["b a c", "b a d", "e  e\ne"], EXERCISE))
    assert lengths.tolist() == [3, 3, 3]
    table = count_words(words)
    assert list(zip(table["word"].to_pylist(), table["count"].to_pylist())) == [
        ("e", 3),
        ("a", 2),
        ("b", 2),
        ("c", 1),
        ("d", 1),
    ]


def test_counts_of_nothing():
    words, lengths = split_words(clean_texts(["", "!!!"], EXERCISE))
    assert len(words) == 0 and lengths.tolist() == [0, 0]
    assert count_words(words).num_rows == 0


def test_vocab_reserved_ids_and_limits():
    counts = counts_table([("the", 9), ("movie", 5), ("good", 5), ("rare", 1)])
    assert build_vocab(counts, max_size=100, min_freq=1) == ["<pad>", "<unk>", "the", "movie", "good", "rare"]
    assert build_vocab(counts, max_size=100, min_freq=2) == ["<pad>", "<unk>", "the", "movie", "good"]
    # max_size counts the two reserved entries
    assert build_vocab(counts, max_size=4, min_freq=1) == ["<pad>", "<unk>", "the", "movie"]
    assert build_vocab(counts, max_size=3, min_freq=10) == ["<pad>", "<unk>"]


def test_reserved_words_in_text_do_not_take_a_second_id():
    counts = counts_table([("<unk>", 7), ("the", 5), ("<pad>", 3)])
    vocab = build_vocab(counts, max_size=10, min_freq=1)
    assert vocab == ["<pad>", "<unk>", "the"]
    # a review that literally says "<pad>" must not produce the padding id
    assert encode(pa.chunked_array([["<pad>", "the", "<unk>"]]), vocab).tolist() == [UNK_ID, 2, UNK_ID]


def test_unknown_words_map_to_unk_never_padding():
    vocab = ["<pad>", "<unk>", "good", "bad"]
    ids = encode(pa.chunked_array([["bad", "unseen", "good", "", "GOOD"]]), vocab)
    assert ids.dtype == np.int32
    assert ids.tolist() == [3, UNK_ID, 2, UNK_ID, UNK_ID]
    assert encode(pa.chunked_array([pa.array([], pa.string())]), vocab).tolist() == []


# --- padding and truncation ----------------------------------------------------------------------

# three reviews of 5, 2 and 0 words, ids 11.. so that every position is visible
IDS = np.array([11, 12, 13, 14, 15, 21, 22], np.int32)
LENGTHS = [5, 2, 0]


@pytest.mark.parametrize(
    "pad_side, truncate_side, expected",
    [
        ("left", "right", [[11, 12, 13, 14], [0, 0, 21, 22], [0, 0, 0, UNK_ID]]),
        ("left", "left", [[12, 13, 14, 15], [0, 0, 21, 22], [0, 0, 0, UNK_ID]]),
        ("right", "right", [[11, 12, 13, 14], [21, 22, 0, 0], [UNK_ID, 0, 0, 0]]),
        ("right", "left", [[12, 13, 14, 15], [21, 22, 0, 0], [UNK_ID, 0, 0, 0]]),
        # both, head_tokens 1: the first token, then the last three
        ("left", "both", [[11, 13, 14, 15], [0, 0, 21, 22], [0, 0, 0, UNK_ID]]),
        ("right", "both", [[11, 13, 14, 15], [21, 22, 0, 0], [UNK_ID, 0, 0, 0]]),
    ],
)
def test_pad_and_truncate_positions(pad_side, truncate_side, expected):
    matrix, kept = pad(IDS, LENGTHS, 4, pad_side, truncate_side, head_tokens=1)
    assert matrix.dtype == np.int32 and kept.dtype == np.int32
    assert matrix.tolist() == expected
    assert kept.tolist() == [4, 2, 1]  # an empty review keeps one unknown-word token


def test_head_and_tail_truncation_keeps_head_tokens_then_the_end():
    review = np.arange(2, 12, dtype=np.int32)  # ten tokens, 2..11
    for head, expected in (
        (2, [2, 3, 8, 9, 10, 11]),
        (0, [6, 7, 8, 9, 10, 11]),
        (6, [2, 3, 4, 5, 6, 7]),
        (9, [2, 3, 4, 5, 6, 7]),
    ):
        matrix, kept = pad(review, [10], 6, "right", "both", head_tokens=head)
        assert matrix[0].tolist() == expected and kept.tolist() == [6], head  # head 0 is left, head >= seq_len is right
    short, _ = pad(review[:4], [4], 6, "right", "both", head_tokens=2)
    assert short[0].tolist() == [2, 3, 4, 5, 0, 0]  # a review that fits is never cut


def test_both_without_head_tokens_is_refused(tmp_path):
    from imdb_rnn.pipeline import PipelineError
    from imdb_rnn.text import check_truncation

    with pytest.raises(PipelineError, match="tokenize.head_tokens is missing"):
        check_truncation({"seq_len": 8, "pad_side": "left", "truncate_side": "both"})
    assert check_truncation({"seq_len": 8, "pad_side": "left", "truncate_side": "right"})["seq_len"] == 8


def test_pad_exact_fit_and_longer_rows():
    matrix, kept = pad(IDS, LENGTHS, 5, "left", "right")
    assert matrix.tolist() == [[11, 12, 13, 14, 15], [0, 0, 0, 21, 22], [0, 0, 0, 0, UNK_ID]]
    matrix, _ = pad(IDS, LENGTHS, 7, "right", "left")
    assert matrix.tolist()[0] == [11, 12, 13, 14, 15, 0, 0]


def test_tokenize_empty_review_is_one_unknown_word():
    vocab = ["<pad>", "<unk>", "good"]
    matrix, kept, n_words = tokenize(
        ["", "Good!", "!!!"], vocab, EXERCISE, {"seq_len": 3, "pad_side": "left", "truncate_side": "right"}
    )
    assert matrix.tolist() == [[0, 0, UNK_ID], [0, 0, 2], [0, 0, UNK_ID]]
    assert kept.tolist() == [1, 1, 1] and n_words.tolist() == [0, 1, 0]


# --- the whole chain against the reference, on random texts --------------------------------------


def check_against_reference(seed, guarded):
    rng = random.Random(seed)
    settings = {
        "normalize": rng.random() < 0.5,
        "lowercase": rng.random() < 0.7,
        "strip_html_breaks": rng.random() < 0.7,
        "punctuation": rng.choice(["remove", "space", "keep"]),
    }
    tok = {
        "seq_len": rng.choice([1, 3, 8, 25]),
        "pad_side": rng.choice(["left", "right"]),
        "truncate_side": rng.choice(["left", "right"]),
    }
    texts = [random_text(rng) for _ in range(rng.choice([1, 7, 300]))]
    if guarded:  # a plain word at each end: no whitespace left at the edges after cleaning
        texts = [f"x {t} y" for t in texts]
    expected_clean = [ref_clean(t, settings) for t in texts]

    cleaned = clean_texts(texts, settings)
    assert cleaned.to_pylist() == expected_clean

    words, lengths = split_words(cleaned)
    assert lengths.tolist() == [len(t.split()) for t in expected_clean]
    table = count_words(words)
    expected_counts = ref_counts(expected_clean)
    assert list(zip(table["word"].to_pylist(), table["count"].to_pylist())) == expected_counts

    max_size, min_freq = rng.choice([3, 10, 1000]), rng.choice([1, 2, 3])
    vocab = build_vocab(table, max_size, min_freq)
    assert vocab == ref_vocab(expected_counts, max_size, min_freq)

    matrix, kept, n_words = tokenize(texts, vocab, settings, tok)
    ref_matrix, ref_kept = ref_tokenize(expected_clean, vocab, **tok)
    np.testing.assert_array_equal(matrix, ref_matrix)
    np.testing.assert_array_equal(kept, ref_kept)
    np.testing.assert_array_equal(n_words, lengths)


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_texts(seed):
    check_against_reference(seed, guarded=True)


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_with_whitespace_at_the_edges(seed):
    check_against_reference(seed, guarded=False)


# --- typographic and web text: read as the ASCII a person means ---------------------------------

TYPED_AND_ASCII = {
    "curly apostrophes": ("I didn\u2019t like it, it wasn\u2019t good", "I didn't like it, it wasn't good"),
    "acute accent as apostrophe": ("didn\u00b4t", "didn't"),
    "HTML entities": ("Tom &amp; Jerry&#39;s &quot;best&quot; &#8230; &lt;3", 'Tom & Jerry\'s "best" ... <3'),
    "byte-order mark": ("\ufeffBrilliant film, I loved it", "Brilliant film, I loved it"),
    "Windows-1252 read as Latin-1": ("great\x96really\x85 I didn\x92t", "great - really ... I didn't"),
    "curly quotes, dashes, ellipsis": (
        "\u201cSuperb\u201d\u2014a wonderful\u2026film",
        '"Superb" - a wonderful ... film',
    ),
    "full-width letters and ligatures": ("\uff27\uff52\uff45\uff41\uff54 \ufb01lm", "Great film"),
    "no-break and zero-width spaces": ("a\u00a0good\u200b film\u00ad", "a good film"),
}


@pytest.mark.parametrize("kind", TYPED_AND_ASCII)
def test_typographic_text_cleans_like_its_ascii_form(kind):
    typed, ascii_form = TYPED_AND_ASCII[kind]
    normalized = clean([typed, ascii_form], normalize=True)
    assert normalized[0].split() == normalized[1].split()
    # without normalize (the exercise, and checkpoints made before it) the typed form reads differently
    plain = clean([typed, ascii_form])
    assert plain[0].split() != plain[1].split()


def test_normalize_changes_no_ascii_text_without_entities():
    rng = random.Random(0)
    texts = [f"x {random_text(rng)} y" for _ in range(300)]
    texts = [t.encode("ascii", "ignore").decode().replace("&", "and") for t in texts]
    assert all(normalize_text(t) == t for t in texts)
    for punctuation in ("remove", "space", "keep"):
        assert clean(texts, normalize=True, punctuation=punctuation) == clean(texts, punctuation=punctuation)


def test_unicode_punctuation_and_symbols_are_punctuation_once_normalized():
    assert clean(["\u00a1Qu\u00e9 bueno! \u00a35 \u2605\u2605 \U0001f600 caf\u00e9"], normalize=True)[0].split() == [
        "qué",
        "bueno",
        "5",
        "café",
    ]
    assert clean(["\u00a1Qu\u00e9 bueno! \u00a3\u2605"], normalize=True, punctuation="keep") == ["¡qué bueno! £★"]


@pytest.mark.parametrize("cores, pools", [({0}, 0), ({0, 1, 2}, 1)])
def test_text_work_uses_the_cores_the_process_may_run_on(monkeypatch, cores, pools):
    # a stage pinned to one core (make pipeline's lanes) must not split its text work into a thread per
    # core of the machine
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    made, real_pool = [], text.ThreadPoolExecutor
    monkeypatch.setattr(text, "ThreadPoolExecutor", lambda n: made.append(n) or real_pool(n))
    reviews = [f"Review {i}: a FINE film<br />really" for i in range(30)]
    assert clean(reviews) == [f"review {i} a fine film really" for i in range(30)]
    assert made == [len(cores)] * pools
