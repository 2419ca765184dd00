"""Read the aclImdb dataset (official URL, local archive or extracted folder) into one table.

The archive is read in one streaming pass: 100,000 small files are never unpacked to disk.
"""

import codecs
import gzip
import hashlib
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .params import Param, load_section
from .pipeline import PipelineError, atomic_path, load, write_json

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # published with the archive; torchtext records it too
# review files per folder of the official archive (its README: 25,000 train, 25,000 test, 50,000 unlabelled)
OFFICIAL_FILES = {
    ("train", "pos"): 12_500,
    ("train", "neg"): 12_500,
    ("test", "pos"): 12_500,
    ("test", "neg"): 12_500,
    ("train", "unsup"): 50_000,
}

SCHEMA = {
    "source": Param(str),
    "md5": Param(str),
    "download_dir": Param(str),
}

# aclImdb/{train,test}/{pos,neg,unsup}/ID_RATING.txt
MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
REVIEW_FOLDER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/[^/]+$")
# aclImdb/{train,test}/urls_{pos,neg,unsup}.txt: line i is the IMDb page of review i's movie
URLS = re.compile(r"(?:^|/)aclImdb/(train|test)/urls_(pos|neg|unsup)\.txt$")
MOVIE_ID = re.compile(r"/title/(tt\d+)")
REQUIRED = [("train", "pos"), ("train", "neg"), ("test", "pos"), ("test", "neg")]
LOCAL_HINT = "set ingest.source in params.yaml to a local aclImdb_v1.tar.gz or an extracted aclImdb/ folder"

TABLE_SCHEMA = pa.schema(
    [
        ("id", pa.int32()),
        ("split", pa.string()),
        ("label", pa.string()),
        ("rating", pa.int8()),  # 1-4 or 7-10 from the file name; null for the unlabelled reviews
        ("text", pa.string()),
        (
            "movie",
            pa.string(),
        ),  # IMDb title id (tt...) from urls_*.txt; null where that file is missing or does not fit
        ("text_hash", pa.int64()),  # of the text as read: equal texts, equal hashes (duplicates)
    ]
)


MAX_NAMED = 20  # files named in the report per kind of problem; the counts cover them all


class _Decoder:
    """Decode review bytes as UTF-8, replacing bad bytes; count them and name the files that hold them."""

    def __init__(self):
        self.bad_bytes = 0
        self.bad_files = []
        self._name = f"imdb_rnn_count_{id(self)}"
        codecs.register_error(self._name, self._handle)

    def _handle(self, err):
        self.bad_bytes += err.end - err.start
        return "\ufffd", err.end

    def __call__(self, raw, name):
        before = self.bad_bytes
        text = raw.decode("utf-8", errors=self._name)
        if self.bad_bytes > before:
            self.bad_files.append(name)
        return text


def is_url(source):
    return source.startswith(("http://", "https://"))


def download(url, dest_dir, md5):
    """Download `url` into `dest_dir` (kept as a cache) and check its MD5; return the archive path."""
    dest = Path(dest_dir) / Path(url.split("?")[0]).name
    if dest.exists() and _md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download aclImdb", disable=None) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        raise PipelineError(f"cannot download {url} ({getattr(err, 'reason', err)}): {LOCAL_HINT}")
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise PipelineError(
            f"checksum mismatch for {url}: MD5 {digest.hexdigest()} != {md5}; the partial download was "
            f"removed, run again or {LOCAL_HINT}"
        )
    part.replace(dest)
    return dest


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _skipped(name):
    """A file inside a review folder (train/pos, test/neg, train/unsup...) whose name is not ID_RATING.txt."""
    return MEMBER.search(name) is None and REVIEW_FOLDER.search(name) is not None


def _iter_archive(path, skipped, urls):
    """Yield (split, label, id, rating, bytes, name) for each review in a .tar.gz, in one streaming pass.

    Files in review folders whose names are not reviews are appended to `skipped`; the lines of
    each urls_*.txt go into `urls` under (split, label)."""
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    m = MEMBER.search(member.name)
                    if m and member.isfile():
                        yield m[1], m[2], int(m[3]), int(m[4]), tar.extractfile(member).read(), member.name
                    elif member.isfile() and (u := URLS.search(member.name)):
                        urls[(u[1], u[2])] = tar.extractfile(member).read().decode("utf-8", "replace").splitlines()
                    elif member.isfile() and _skipped(member.name):
                        skipped.append(member.name)
            # tar stops at its end-of-archive marker, or silently at a header cut short: reading
            # the compressed stream to its end checks the gzip trailer, so truncation is an error
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise PipelineError(
            f"archive {path} is corrupt or truncated ({type(err).__name__}: {err}): download it again or {LOCAL_HINT}"
        )


def _iter_folder(path, skipped, urls):
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    for split in ("train", "test"):
        for label in ("pos", "neg", "unsup"):
            if (root / split / f"urls_{label}.txt").is_file():
                urls[(split, label)] = (root / split / f"urls_{label}.txt").read_text("utf-8", "replace").splitlines()
            folder = root / split / label
            if not folder.is_dir():
                continue
            for file in sorted(folder.iterdir()):
                name = f"aclImdb/{split}/{label}/{file.name}"  # as the archive names it
                m = MEMBER.search(name)
                if m and file.is_file():
                    yield split, label, int(m[3]), int(m[4]), file.read_bytes(), name
                else:
                    skipped.append(name)


EXPERIMENT_COPY = re.compile(r"^(.*)/\.dvc/tmp/exps/")  # where DVC copies the repo for a queued or --temp run


def resolve_source(source, cwd=None):
    """The local path `source` names; a relative one is relative to the project root.

    `dvc exp run --queue` and `--temp` run the pipeline in a copy of the repository under
    .dvc/tmp/exps/, where a path such as ../shared/... would point elsewhere: it is then taken
    relative to the repository the experiment came from. Raises PipelineError naming every path tried.
    """
    path = Path(source).expanduser()
    if path.is_absolute():
        tried = [path]
    else:
        cwd = Path(cwd or os.getcwd()).resolve()
        tried = [cwd / path]
        origin = EXPERIMENT_COPY.match(cwd.as_posix() + "/")
        if origin:
            tried.append(Path(origin[1]) / path)
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise PipelineError(
        f"dataset source {source} does not exist (looked for {' and '.join(str(t.resolve()) for t in tried)}): "
        f"{LOCAL_HINT} (an absolute path works from anywhere), or use the official URL"
    )


def _movies(urls, folder_ids, files):
    """(movie per review, status per folder) from the urls_*.txt lines; None where a file is missing or does not fit.

    `folder_ids` maps (split, label) folders to the review ids read there (the files' numbers),
    `files` to the number of review files there (empty ones too). A file fits when it has one line per
    review file in its folder (empty reviews included).
    """
    movies, status = {}, {}
    for key, ids in folder_ids.items():
        lines = urls.get(key)
        name = f"{key[0]}/urls_{key[1]}.txt"
        if lines is None:
            status[name] = "missing"
        elif len(lines) != files[key] or max(ids, default=-1) >= len(lines):
            status[name] = f"{len(lines)} lines for {files[key]} review files"
        else:
            status[name] = "ok"
            for review_id in ids:
                found = MOVIE_ID.search(lines[review_id])
                movies[(*key, review_id)] = found[1] if found else lines[review_id].strip() or None
    return movies, status


def check_complete(source, path, files, urls, official):
    """Raise PipelineError where a folder holds fewer review files than it should: fewer than its urls_*.txt
    has lines (one per review file), or, for the official archive (`official`: its MD5), than OFFICIAL_FILES.
    The unlabelled folder may be left out whole (`tar xzf ... --exclude=aclImdb/train/unsup`), not in part.
    An interrupted `tar xzf` leaves such a folder, which would otherwise train and test on what is left.
    More files than lines (reviews added by hand) only cost the movies: _movies says so."""
    expected = {key: (len(lines), f"{key[0]}/urls_{key[1]}.txt lists {len(lines):,}") for key, lines in urls.items()}
    if official:
        expected.update({key: (count, f"the official archive has {count:,}") for key, count in OFFICIAL_FILES.items()})
    for (split, label), (count, why) in sorted(expected.items()):
        if files[(split, label)] == 0 and (split, label) not in REQUIRED:  # an optional folder left out on purpose
            continue
        if files[(split, label)] < count:
            hint = (
                "extract aclImdb_v1.tar.gz again, or point ingest.source at the .tar.gz itself"
                if path.is_dir()
                else "download it again"
            )
            raise PipelineError(
                f"{source} is incomplete: aclImdb/{split}/{label} holds {files[(split, label)]:,} review files "
                f"but {why} (an interrupted extraction or download?): {hint}"
            )


def text_hashes(texts):
    """A 64-bit hash per text (BLAKE2b): equal texts get equal hashes, so duplicates are equal values."""
    return [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little", signed=True) for t in texts]


def duplicate_counts(split, hashes):
    """Exact duplicate texts within and across the official splits (numpy arrays of split names and hashes).

    Returns a dict: extra copies inside train and inside test (copies beyond the first), test reviews
    whose text is also a training review's, and unlabelled reviews whose text is also a test review's.
    """
    part = {name: hashes[split == name] for name in ("train", "test", "unsup")}
    return {
        "extra_copies_in_train": int(len(part["train"]) - len(np.unique(part["train"]))),
        "extra_copies_in_test": int(len(part["test"]) - len(np.unique(part["test"]))),
        "test_reviews_in_train": int(np.isin(part["test"], part["train"]).sum()),
        "unsup_reviews_in_test": int(np.isin(part["unsup"], part["test"]).sum()),
    }


def read_reviews(source, download_dir="data/raw", md5=OFFICIAL_MD5):
    """Return (table, report) for the dataset at `source`: a URL, a .tar.gz, or an aclImdb folder.

    Each review carries its movie (from urls_*.txt, null where the file is missing or its line count
    does not fit; the report says which) and a hash of its text. Raises PipelineError when the
    source is missing, corrupt, or not an aclImdb dataset.
    """
    path = download(source, download_dir, md5) if is_url(source) else resolve_source(source)
    skipped, urls = [], {}
    reviews = _iter_folder(path, skipped, urls) if path.is_dir() else _iter_archive(path, skipped, urls)

    decode = _Decoder()
    columns = {name: [] for name in TABLE_SCHEMA.names if name not in ("movie", "text_hash")}
    folders, folder_ids, files = [], {}, Counter()
    counts, empty = Counter(), Counter()
    for split, label, review_id, rating, raw, name in tqdm(
        reviews, desc="read reviews", unit=" files", mininterval=2, disable=None
    ):
        files[(split, label)] += 1
        text = decode(raw, name)
        if not text.strip():
            empty[f"{split}/{label}"] += 1
            continue
        folder_ids.setdefault((split, label), []).append(review_id)
        folders.append((split, label, review_id))
        if label == "unsup":  # aclImdb keeps the unlabelled reviews under train/unsup, rated 0: no rating
            split, label, rating = "unsup", "none", None
        counts[(split, label)] += 1
        columns["id"].append(review_id)
        columns["split"].append(split)
        columns["label"].append(label)
        columns["rating"].append(rating)
        columns["text"].append(text)

    missing = [f"{s}/{label}" for s, label in REQUIRED if counts[(s, label)] == 0]
    if missing:
        raise PipelineError(
            f"{source} is not an aclImdb dataset: no reviews under {', '.join(missing)}; point ingest.source "
            "at aclImdb_v1.tar.gz or the extracted aclImdb/ folder"
        )
    check_complete(source, path, files, urls, official=path.is_file() and _md5(path) == OFFICIAL_MD5)
    movie_of, movie_status = _movies(urls, folder_ids, files)
    columns["movie"] = [movie_of.get(key) for key in folders]
    columns["text_hash"] = text_hashes(columns["text"])
    table = pa.table(columns, schema=TABLE_SCHEMA)
    # the archive's member order is not part of the data: sort so the table is the same from any source
    table = table.sort_by([("split", "ascending"), ("label", "ascending"), ("id", "ascending")])
    split_names = table["split"].to_numpy(zero_copy_only=False)
    labelled = split_names != "unsup"
    without_movie = int(table["movie"].is_null().to_numpy(zero_copy_only=False)[labelled].sum())
    report = {
        "source": str(source),
        "reviews": table.num_rows,
        "per_split": {s: sum(v for (sp, _), v in counts.items() if sp == s) for s in ("train", "test", "unsup")},
        "per_label": {f"{s}/{label}": counts[(s, label)] for s, label in sorted(counts)},
        "empty_files_dropped": sum(empty.values()),
        "invalid_utf8_bytes": decode.bad_bytes,
        "files_with_invalid_utf8": len(decode.bad_files),
        "files_with_invalid_utf8_named": decode.bad_files[:MAX_NAMED],
        # files in review folders not named ID_RATING.txt (e.g. .DS_Store, notes.txt): not reviews, not read
        "files_skipped": len(skipped),
        "files_skipped_named": skipped[:MAX_NAMED],
        "movie_files": dict(sorted(movie_status.items())),
        "labelled_reviews_without_movie": without_movie,
        "movies": {
            s: len(set(table.filter(pa.array(split_names == s))["movie"].drop_null().to_pylist()))
            for s in ("train", "test")
        },
        "duplicates": duplicate_counts(split_names, table["text_hash"].to_numpy()),
    }
    if decode.bad_files:
        print(
            f"ingest: warning: {len(decode.bad_files)} file(s) hold invalid UTF-8, replaced by U+FFFD: "
            f"{', '.join(decode.bad_files[:3])}{' ...' if len(decode.bad_files) > 3 else ''} "
            "(metrics/ingest.json names them)",
            file=sys.stderr,
        )
    if skipped:
        print(
            f"ingest: warning: {len(skipped)} file(s) in review folders are not named ID_RATING.txt and were skipped: "
            f"{', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}",
            file=sys.stderr,
        )
    if without_movie:
        bad = [
            f"{name} {state}" for name, state in sorted(movie_status.items()) if state != "ok" and "unsup" not in name
        ]
        print(
            f"ingest: warning: {without_movie} labelled review(s) have no movie ({'; '.join(bad)}): "
            "split.group_by: movie will refuse them (metrics/ingest.json: movie_files)",
            file=sys.stderr,
        )
    return table, report


def write_table(table, path):
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path, columns=None):
    return load(
        path,
        "table",
        lambda p: pq.read_table(p, columns=columns),
        make="run the stages before it (dvc repro)",
        errors=(pa.ArrowInvalid, OSError),
    )


def ingest(params_path, paths):
    """The ingest stage: aclImdb from ingest.source into one Parquet table and a report.

    `paths` maps out, report to files, as dvc.yaml names them.
    """

    params = load_section(params_path, "ingest", SCHEMA)
    table, report = read_reviews(params["source"], params["download_dir"], params["md5"])
    write_table(table, paths["out"])
    write_json(paths["report"], report)
    print(f"ingest: {report['reviews']} reviews {report['per_split']} -> {paths['out']}")
