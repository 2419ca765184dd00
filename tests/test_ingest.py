"""Ingest: the same table from an archive, a folder or a URL; every bad input is a one-line error."""

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import (
    STAGES,
    TINY_PER_LABEL,
    TINY_UNSUP,
    assert_one_line_error,
    dvc_args,
    repo_params,
    run_script,
    script_env,
    write_params,
)

from imdb_rnn.ingest import TABLE_SCHEMA, read_reviews
from imdb_rnn.pipeline import PipelineError

WRONG_MD5 = "0" * 32
TINY_REVIEWS = 4 * TINY_PER_LABEL + TINY_UNSUP


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def ingest_params(tmp_path, source, md5=WRONG_MD5, change=None):
    section = {"source": str(source), "md5": md5, "download_dir": str(tmp_path / "raw")}
    section.update(change or {})
    return write_params(tmp_path / "params.yaml", {"ingest": section})


def run_ingest(tmp_path, progress=False):
    return run_script(
        "ingest",
        "--params",
        tmp_path / "params.yaml",
        "--out",
        tmp_path / "out/reviews.parquet",
        "--report",
        tmp_path / "out/ingest.json",
        cwd=tmp_path,
        progress=progress,
    )


def assert_no_output(tmp_path):
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


def extract(archive, dest):
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a free port) from a thread; yields (base URL, served folder, request paths)."""
    www = tmp_path / "www"
    www.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www, requests
    finally:
        server.shutdown()
        server.server_close()


# --- reading -------------------------------------------------------------------------------------


def test_archive_and_folder_give_the_same_table(tmp_path, tiny_archive):
    from_archive, report = read_reviews(str(tiny_archive))
    folder = extract(tiny_archive, tmp_path / "extracted")
    from_parent, _ = read_reviews(str(folder))  # the folder holding aclImdb/
    from_folder, report_folder = read_reviews(str(folder / "aclImdb"))  # aclImdb/ itself
    assert from_archive.schema == TABLE_SCHEMA
    assert from_archive.column_names == ["id", "split", "label", "rating", "text", "movie", "text_hash"]
    assert from_archive.equals(from_parent) and from_archive.equals(from_folder)
    assert {k: v for k, v in report.items() if k != "source"} == {
        k: v for k, v in report_folder.items() if k != "source"
    }
    labelled = 2 * TINY_PER_LABEL
    assert report["reviews"] == TINY_REVIEWS
    assert report["per_split"] == {"train": labelled, "test": labelled, "unsup": TINY_UNSUP}
    assert report["per_label"] == {
        "test/neg": TINY_PER_LABEL,
        "test/pos": TINY_PER_LABEL,
        "train/neg": TINY_PER_LABEL,
        "train/pos": TINY_PER_LABEL,
        "unsup/none": TINY_UNSUP,
    }


def test_rows_carry_split_label_rating_and_text(archive_factory):
    archive = archive_factory(
        per_label=3,
        unsup=2,
        extra={
            "aclImdb/train/pos/12345_9.txt": b"A fine film.",
            "aclImdb/test/neg/777_2.txt": b"Dull.",
            "aclImdb/train/unsup/4242_0.txt": b"No label here.",
            "aclImdb/train/urls_pos.txt": b"http://example.invalid/ not a review",
            "aclImdb/imdb.vocab": b"the\nmovie\n",
        },
    )
    table, report = read_reviews(str(archive))
    # ids repeat across folders (train/pos/0_9.txt and train/neg/0_3.txt): a row is (split, label, id)
    rows = {
        (r["split"], r["label"], r["id"]): {k: r[k] for k in ("id", "split", "label", "rating", "text")}
        for r in table.to_pylist()
    }
    assert rows[("train", "pos", 12345)] == {
        "id": 12345,
        "split": "train",
        "label": "pos",
        "rating": 9,
        "text": "A fine film.",
    }
    assert rows[("test", "neg", 777)] == {"id": 777, "split": "test", "label": "neg", "rating": 2, "text": "Dull."}
    # unlabelled reviews live under train/unsup/ in aclImdb but form their own split
    # its file name says rating 0, meaning none: the table says so with a null
    assert rows[("unsup", "none", 4242)] == {
        "id": 4242,
        "split": "unsup",
        "label": "none",
        "rating": None,
        "text": "No label here.",
    }
    assert {(r["split"], r["label"]) for r in rows.values()} == {
        ("train", "pos"),
        ("train", "neg"),
        ("test", "pos"),
        ("test", "neg"),
        ("unsup", "none"),
    }
    assert report["reviews"] == table.num_rows == 4 * 3 + 2 + 3  # the url list and vocab file are not reviews
    # ratings follow the labels: pos 7-10, neg 1-4, unlabelled none
    for r in rows.values():
        assert r["rating"] in {"pos": range(7, 11), "neg": range(1, 5), "none": [None]}[r["label"]]


def test_empty_files_dropped_and_counted(archive_factory):
    archive = archive_factory(
        per_label=3,
        unsup=1,
        extra={
            "aclImdb/train/pos/900_8.txt": b"",
            "aclImdb/test/neg/901_1.txt": b" \n\t ",
            "aclImdb/train/unsup/902_0.txt": b"",
        },
    )
    table, report = read_reviews(str(archive))
    assert report["empty_files_dropped"] == 3
    assert report["reviews"] == table.num_rows == 4 * 3 + 1
    assert not {900, 901, 902} & set(table["id"].to_pylist())


def test_invalid_utf8_replaced_and_counted(archive_factory):
    archive = archive_factory(
        per_label=2,
        unsup=0,
        extra={
            "aclImdb/train/neg/50_3.txt": b"caf\xe9 was bad \xff\xfe really",
            "aclImdb/test/pos/51_8.txt": "fine caf\u00e9 \u2014 ok".encode(),  # val multi-byte UTF-8
        },
    )
    table, report = read_reviews(str(archive))
    texts = dict(zip(table["id"].to_pylist(), table["text"].to_pylist()))
    assert texts[50] == "caf\ufffd was bad \ufffd\ufffd really"
    assert texts[51] == "fine caf\u00e9 \u2014 ok"
    assert report["invalid_utf8_bytes"] == 3
    assert report["files_with_invalid_utf8"] == 1
    assert report["files_with_invalid_utf8_named"] == ["aclImdb/train/neg/50_3.txt"]


def test_files_that_are_not_reviews_are_skipped_counted_and_named(tmp_path, archive_factory):
    stray = {
        "aclImdb/train/pos/.DS_Store": b"\x00\x01",
        "aclImdb/test/neg/notes.txt": b"to do",
        "aclImdb/train/urls_pos.txt": b"http://example.invalid/",
        "aclImdb/imdb.vocab": b"the\n",
    }
    archive = archive_factory(per_label=2, unsup=0, extra=stray)
    named = ["aclImdb/test/neg/notes.txt", "aclImdb/train/pos/.DS_Store"]
    table, report = read_reviews(str(archive))
    assert report["files_skipped"] == 2 and sorted(report["files_skipped_named"]) == named
    assert table.num_rows == 8  # url lists and the vocabulary lie outside the review folders: never counted
    _, from_folder = read_reviews(str(extract(archive, tmp_path / "extracted")))
    assert from_folder["files_skipped"] == 2 and sorted(from_folder["files_skipped_named"]) == named


def test_stage_writes_table_and_report(tmp_path, tiny_archive):
    ingest_params(tmp_path, tiny_archive)
    result = run_ingest(tmp_path)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(tmp_path / "out/reviews.parquet")
    expected, _ = read_reviews(str(tiny_archive))
    assert table.equals(expected)
    assert json.loads((tmp_path / "out/ingest.json").read_text())["reviews"] == TINY_REVIEWS


# --- downloading (a local server only) -----------------------------------------------------------


def test_download_with_right_md5(tmp_path, tiny_archive, http_server):
    base, www, requests = http_server
    shutil.copy(tiny_archive, www / "aclImdb_v1.tar.gz")
    ingest_params(tmp_path, f"{base}/aclImdb_v1.tar.gz", md5=md5_of(tiny_archive))
    result = run_ingest(tmp_path, progress=True)  # with the progress bars drawn
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr  # bars are drawn only on a terminal
    cached = tmp_path / "raw/aclImdb_v1.tar.gz"
    assert cached.read_bytes() == tiny_archive.read_bytes()
    assert not (tmp_path / "raw/aclImdb_v1.tar.gz.part").exists()
    assert pq.read_table(tmp_path / "out/reviews.parquet").num_rows == TINY_REVIEWS
    # a second read uses the checked download instead of fetching it again
    table, _ = read_reviews(f"{base}/aclImdb_v1.tar.gz", tmp_path / "raw", md5_of(tiny_archive))
    assert table.num_rows == TINY_REVIEWS and requests == ["/aclImdb_v1.tar.gz"]


def test_checksum_mismatch_removes_partial_download(tmp_path, tiny_archive, http_server):
    base, www, _ = http_server
    shutil.copy(tiny_archive, www / "aclImdb_v1.tar.gz")
    ingest_params(tmp_path, f"{base}/aclImdb_v1.tar.gz", md5=WRONG_MD5)
    assert_one_line_error(run_ingest(tmp_path), "checksum mismatch", md5_of(tiny_archive), WRONG_MD5)
    assert not any((tmp_path / "raw").iterdir())  # neither the archive nor its .part
    assert_no_output(tmp_path)


def test_unreachable_url(tmp_path):
    # port 9 (discard) on the loopback: nothing listens, the connection is refused at once
    ingest_params(tmp_path, "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    assert_one_line_error(run_ingest(tmp_path), "cannot download http://127.0.0.1:9/aclImdb_v1.tar.gz", "ingest.source")
    assert not (tmp_path / "raw/aclImdb_v1.tar.gz.part").exists()
    assert_no_output(tmp_path)


def test_missing_http_file(tmp_path, http_server):
    base, _, _ = http_server
    ingest_params(tmp_path, f"{base}/aclImdb_v1.tar.gz")
    assert_one_line_error(run_ingest(tmp_path), "cannot download", "not found")
    assert_no_output(tmp_path)


# --- bad sources ---------------------------------------------------------------------------------


def test_missing_source(tmp_path):
    ingest_params(tmp_path, tmp_path / "nowhere/aclImdb_v1.tar.gz")
    assert_one_line_error(run_ingest(tmp_path), "does not exist", "nowhere/aclImdb_v1.tar.gz")
    assert_no_output(tmp_path)


def test_truncated_archive(tmp_path, tiny_archive):
    data = tiny_archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) * 3 // 4])
    ingest_params(tmp_path, truncated)
    assert_one_line_error(run_ingest(tmp_path), "corrupt or truncated", "truncated.tar.gz")
    assert_no_output(tmp_path)


def test_every_truncation_is_an_error(tiny_archive):
    data = tiny_archive.read_bytes()
    complete = read_reviews(str(tiny_archive))[0].num_rows
    path = tiny_archive.parent / "cut.tar.gz"
    silent = []
    try:
        for cut in range(len(data) // 2, len(data) - 100, 53):
            path.write_bytes(data[:cut])
            try:
                table, _ = read_reviews(str(path))
            except PipelineError:
                continue
            if table.num_rows != complete:
                silent.append((cut, table.num_rows))
    finally:
        path.unlink(missing_ok=True)
    assert not silent, f"truncated archives read without error (cut, reviews): {silent[:5]}"


def test_corrupt_archive(tmp_path):
    corrupt = tmp_path / "aclImdb_v1.tar.gz"
    corrupt.write_bytes(b"this is not a gzip file\n" * 100)
    ingest_params(tmp_path, corrupt)
    assert_one_line_error(run_ingest(tmp_path), "corrupt or truncated")
    assert_no_output(tmp_path)


def test_progress_bar_does_not_hide_the_error(tmp_path):
    corrupt = tmp_path / "aclImdb_v1.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"garbage" * 50)
    ingest_params(tmp_path, corrupt)
    result = run_ingest(tmp_path, progress=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.rstrip("\n").split("\n")[-1].startswith("error: archive")


@pytest.mark.parametrize("missing", ["train/pos", "train/neg", "test/pos", "test/neg"])
def test_archive_missing_a_folder(tmp_path, archive_factory, missing):
    ingest_params(tmp_path, archive_factory(per_label=3, unsup=1, skip=(missing,)))
    assert_one_line_error(run_ingest(tmp_path), "not an aclImdb dataset", f"no reviews under {missing}")
    assert_no_output(tmp_path)


def test_folder_missing_a_folder(tmp_path, archive_factory):
    folder = extract(archive_factory(per_label=3, unsup=1), tmp_path / "extracted")
    shutil.rmtree(folder / "aclImdb/test/neg")
    ingest_params(tmp_path, folder / "aclImdb")
    assert_one_line_error(run_ingest(tmp_path), "not an aclImdb dataset", "test/neg")
    assert_no_output(tmp_path)


def test_unrelated_archive(tmp_path):
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(__file__, arcname="project/test_ingest.py")
    ingest_params(tmp_path, other)
    assert_one_line_error(run_ingest(tmp_path), "not an aclImdb dataset")
    assert_no_output(tmp_path)


# --- params, checked before any work -------------------------------------------------------------


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"sorce": "x"}, ["unknown parameter ingest.sorce", "known keys are download_dir, md5, source"]),
        ({"source": 42}, ["ingest.source must be str", "42"]),
        ({"md5": None}, ["ingest.md5 must be str"]),
    ],
    ids=["unknown-key", "wrong-type", "null"],
)
def test_invalid_ingest_params(tmp_path, http_server, change, fragments):
    base, www, requests = http_server
    (www / "aclImdb_v1.tar.gz").write_bytes(b"x")
    ingest_params(tmp_path, f"{base}/aclImdb_v1.tar.gz", change=change)
    assert_one_line_error(run_ingest(tmp_path), *fragments)
    assert requests == []  # rejected before any download
    assert_no_output(tmp_path)


def test_missing_ingest_section(tmp_path):
    write_params(tmp_path / "params.yaml", {"clean": repo_params()["clean"]})
    assert_one_line_error(run_ingest(tmp_path), "no 'ingest' section")


@pytest.mark.parametrize(
    "stage, section, change, fragments",
    [
        ("clean", "clean", {"punctuation": "strip"}, ["clean.punctuation must be one of remove, space, keep"]),
        ("clean", "clean", {"lowercase": "yes"}, ["clean.lowercase must be bool"]),
        ("vocab", "vocab", {"max_size": 2}, ["vocab.max_size must be >= 3"]),
        ("vocab", "vocab", {"min_freq": 1.5}, ["vocab.min_freq must be int"]),
        ("vocab", "vocab", {"sources": ["test"]}, ["vocab.sources", "['train', 'unsup']"]),
        ("tokenize_pad", "tokenize", {"seq_len": 0}, ["tokenize.seq_len must be >= 1"]),
        ("tokenize_pad", "tokenize", {"pad_side": "both"}, ["tokenize.pad_side must be one of left, right"]),
        ("tokenize_pad", "tokenize", {"truncate": "left"}, ["unknown parameter tokenize.truncate"]),
        ("split", "split", {"val_fraction": 1.5}, ["split.val_fraction must be <= 0.99"]),
        ("split", "split", {"seed": True}, ["split.seed must be int"]),
        ("split", "split", {"seed": None}, ["split.seed must be int"]),
        ("split", "split", {"group_by": "film"}, ["split.group_by must be one of review, movie, got 'film'"]),
        (
            "tokenize_pad",
            "tokenize",
            {"truncate_side": "both", "head_tokens": -1},
            ["tokenize.head_tokens must be >= 0"],
        ),
    ],
)
def test_invalid_data_stage_params(tmp_path, stage, section, change, fragments):
    """Checked first: the stages' inputs do not even exist here, yet the error is about the parameter."""
    params = repo_params()
    params[section].update(change)
    write_params(tmp_path / "params.yaml", params)
    assert_one_line_error(run_script(stage, cwd=tmp_path), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_head_and_tail_truncation_without_head_tokens_is_one_line(tmp_path):
    params = repo_params()
    params["tokenize"]["truncate_side"] = "both"
    del params["tokenize"]["head_tokens"]
    write_params(tmp_path / "params.yaml", params)
    assert_one_line_error(run_script("tokenize_pad", cwd=tmp_path), "tokenize.head_tokens is missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_stage_input(tmp_path):
    write_params(tmp_path / "params.yaml", repo_params())
    assert_one_line_error(run_script("clean", cwd=tmp_path), "data/ingest/reviews.parquet is missing", "dvc repro")


def test_each_review_carries_its_movie_from_the_urls_files(tiny_archive):
    from synthetic import movie_of

    table, report = read_reviews(str(tiny_archive))
    for row in table.to_pylist():
        folder = "unsup" if row["split"] == "unsup" else row["split"]
        assert row["movie"] == movie_of(folder, row["id"])
    assert report["labelled_reviews_without_movie"] == 0
    assert set(report["movie_files"].values()) == {"ok"} and len(report["movie_files"]) == 5
    # 60 reviews per label, 4 per label per movie: 15 movies per split, none shared
    assert report["movies"] == {"train": TINY_PER_LABEL // 4, "test": TINY_PER_LABEL // 4}


@pytest.mark.parametrize(
    "extra, status",
    [
        (
            {"aclImdb/train/urls_pos.txt": b"http://www.imdb.com/title/tt0000001/usercomments\n"},
            "1 lines for 8 review files",
        ),
        ({}, "missing"),
    ],
)
def test_a_missing_or_misfitting_urls_file_is_named_and_its_reviews_get_no_movie(
    archive_factory, capsys, extra, status
):
    archive = archive_factory(per_label=8, unsup=0, urls=bool(extra), extra=extra)
    table, report = read_reviews(str(archive))
    assert report["movie_files"]["train/urls_pos.txt"] == status
    rows = table.to_pylist()
    assert all(r["movie"] is None for r in rows if (r["split"], r["label"]) == ("train", "pos"))
    unaffected = [r for r in rows if (r["split"], r["label"]) != ("train", "pos")]
    assert all(r["movie"] for r in unaffected) if extra else all(r["movie"] is None for r in unaffected)
    assert report["labelled_reviews_without_movie"] == (8 if extra else 32)
    warning = [line for line in capsys.readouterr().err.splitlines() if "no movie" in line]
    assert len(warning) == 1 and "train/urls_pos.txt" in warning[0] and "group_by" in warning[0]


def test_exact_duplicates_are_counted_within_and_across_splits(archive_factory):
    same, other = b"Exactly the same words in both.", b"Another copy, another place."
    archive = archive_factory(
        per_label=4,
        unsup=0,
        urls=False,
        extra={
            "aclImdb/train/pos/100_9.txt": same,
            "aclImdb/train/neg/100_2.txt": same,
            "aclImdb/train/pos/101_8.txt": same,
            "aclImdb/test/pos/100_9.txt": same,
            "aclImdb/test/neg/101_1.txt": other,
            "aclImdb/test/neg/102_1.txt": other,
            "aclImdb/train/unsup/100_0.txt": other,
            "aclImdb/train/unsup/101_0.txt": b"Only here.",
        },
    )
    table, report = read_reviews(str(archive))
    assert report["duplicates"] == {
        "extra_copies_in_train": 2,  # three copies of `same`
        "extra_copies_in_test": 1,  # two of `other`
        "test_reviews_in_train": 1,  # test/pos/100 is `same`
        "unsup_reviews_in_test": 1,  # unsup/100 is `other`
    }
    hashes = {r["text"]: r["text_hash"] for r in table.to_pylist()}
    assert len(set(hashes.values())) == len(hashes)  # different texts, different hashes


def test_the_unlabelled_token_ids_hold_no_test_text(tmp_path, archive_factory):
    from conftest import tiny_params

    copied = b"A test review that someone also posted unlabelled. Superb film."
    archive = archive_factory(
        per_label=10,
        unsup=12,
        extra={
            "aclImdb/test/pos/500_9.txt": copied,
            "aclImdb/train/unsup/500_0.txt": copied,
            "aclImdb/train/unsup/501_0.txt": copied,
            "aclImdb/train/unsup/502_0.txt": b"Only unlabelled, never tested.",
        },
    )
    write_params(tmp_path / "params.yaml", tiny_params(archive))
    for stage in ("ingest", "clean", "vocab", "tokenize_pad"):
        result = run_script(stage, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    unsup, test = (np.load(tmp_path / f"data/tokens/{name}.npz") for name in ("unsup", "test"))
    assert len(unsup["labels"]) == 12 + 1 and set(unsup["labels"].tolist()) == {-1}  # 500 and 501 left out, 502 kept
    assert not np.isin(unsup["text_hashes"], test["text_hashes"]).any()
    assert 502 in unsup["review_ids"].tolist() and not {500, 501} & set(unsup["review_ids"].tolist())
    summary = json.loads((tmp_path / "metrics/tokenize.json").read_text())["unsup"]
    assert (summary["reviews"], summary["left_out_as_test_texts"]) == (15, 2)
    assert unsup["ids"].shape[1] == test["ids"].shape[1]  # padded like the labelled reviews


def test_a_partly_extracted_folder_is_refused_with_the_folder_and_both_counts(tiny_archive, tmp_path):
    """An interrupted `tar xzf` leaves some review files of a folder: its urls_*.txt says how many there must be."""
    folder = extract(tiny_archive, tmp_path / "extracted") / "aclImdb"
    for file in sorted((folder / "test/neg").iterdir())[20:]:
        file.unlink()
    params = repo_params()
    params["ingest"]["source"] = str(folder)
    write_params(tmp_path / "params.yaml", params)
    result = run_script("ingest", cwd=tmp_path)
    assert_one_line_error(
        result,
        f"{folder} is incomplete: aclImdb/test/neg holds 20 review files",
        f"test/urls_neg.txt lists {TINY_PER_LABEL}",
        "extract aclImdb_v1.tar.gz again",
        "the .tar.gz itself",
    )
    assert not (tmp_path / "data/ingest/reviews.parquet").exists()


def test_an_archive_short_of_the_reviews_its_urls_list_is_refused(archive_factory):
    lines = "".join(f"http://www.imdb.com/title/tt{i:07d}/usercomments\n" for i in range(12)).encode()
    archive = archive_factory(per_label=8, unsup=3, extra={"aclImdb/train/urls_unsup.txt": lines})
    with pytest.raises(
        PipelineError,
        match=r"aclImdb/train/unsup holds 3 review files but train/urls_unsup.txt lists 12 .*download it again",
    ):
        read_reviews(str(archive))


def test_the_official_archive_must_hold_the_official_counts(archive_factory, monkeypatch):
    """Where the archive is the official one by its MD5, every folder must hold the README's count."""
    from imdb_rnn import ingest

    archive = archive_factory(per_label=4, unsup=2)
    monkeypatch.setattr(ingest, "OFFICIAL_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(
        PipelineError, match="aclImdb/test/neg holds 4 review files but the official archive has 12,500"
    ):
        read_reviews(str(archive))
    monkeypatch.setattr(
        ingest,
        "OFFICIAL_FILES",
        {("train", "pos"): 4, ("train", "neg"): 4, ("test", "pos"): 4, ("test", "neg"): 4, ("train", "unsup"): 2},
    )
    assert read_reviews(str(archive))[1]["reviews"] == 18


def test_a_file_size_limit_or_full_disk_is_one_line_and_leaves_nothing(tiny_archive, tmp_path):
    import resource

    params = repo_params()
    params["ingest"]["source"] = str(tiny_archive)
    write_params(tmp_path / "params.yaml", params)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731  the table is larger
    result = subprocess.run(
        [sys.executable, str(STAGES / "ingest.py"), *dvc_args("ingest")],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert_one_line_error(result, "cannot write", "File too large", "free disk space")
    assert not list((tmp_path / "data/ingest").iterdir())  # no table, no temporary file


def test_an_unlabelled_folder_left_out_whole_is_not_incomplete(tiny_archive, tmp_path):
    """`tar xzf aclImdb_v1.tar.gz --exclude=aclImdb/train/unsup` skips the 50,000 optional files on purpose."""
    folder = extract(tiny_archive, tmp_path / "extracted") / "aclImdb"
    shutil.rmtree(folder / "train/unsup")
    _, report = read_reviews(str(folder))
    assert report["per_split"] == {"train": 2 * TINY_PER_LABEL, "test": 2 * TINY_PER_LABEL, "unsup": 0}
    (folder / "train/unsup").mkdir()
    (folder / "train/unsup/0_0.txt").write_text("Only one of them.")  # a part of it is incomplete
    with pytest.raises(PipelineError, match="aclImdb/train/unsup holds 1 review files"):
        read_reviews(str(folder))
