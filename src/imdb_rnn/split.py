"""Seeded, stratified train/validation split of the labelled training reviews, grouped by review or by movie.

aclImdb's official train and test sets share no movies. A split over reviews puts most validation
reviews beside training reviews of the same movie; `group_by: movie` keeps each movie on one side,
as test is. Either way, reviews with the same text stay on one side.
"""

import sys

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .params import Param, load_section
from .pipeline import PipelineError, load_npz, save_npz, write_json
from .text import without_known_words

GROUP_BY = ("review", "movie")
CLASS_NAMES = {0: "neg", 1: "pos"}

SCHEMA = {
    "val_fraction": Param(float, min=0.01, max=0.99),
    "seed": Param(int, min=0),
    "group_by": Param(str, choices=GROUP_BY),
}


def groups_of(text_hashes, movies=None):
    """A group id per review (int array, shape (n,)): reviews joined by equal text, and by equal movie if
    `movies` is given.

    The groups are the connected components of "same text" (and "same movie"), so a review that
    shares its text with a review of another movie joins both movies into one group.
    """
    keys = [np.unique(text_hashes, return_inverse=True)[1]]
    if movies is not None:
        keys.append(np.unique(movies, return_inverse=True)[1])
    n = len(text_hashes)
    rows, cols, offset = [], [], n
    for key in keys:  # a bipartite graph: review i -- key node
        rows.append(np.arange(n))
        cols.append(key + offset)
        offset += key.max() + 1 if n else 0
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(offset, offset))
    return connected_components(graph, directed=False)[1][:n]


def stratified_split(labels, val_fraction, seed, groups=None, group_by="review"):
    """Return (train_idx, val_idx), whole groups on each side and each class in `val_fraction` proportion.

    `groups` (shape (n,), any values) defaults to one group per review; `group_by` (review or movie)
    names what joined them, for the messages.

    Groups are visited in a seeded random order and go into validation while no class passes its
    target (round(class size x val_fraction)); a second pass adds any group that brings the counts
    closer to the targets in total. With many small groups each class ends at or near its target.
    Raises PipelineError when there are fewer than two classes, a class too small for both parts,
    or groups too large to leave both classes on both sides.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise PipelineError("the training reviews hold only one class: they need both pos and neg")
    targets = []
    for cls in classes:
        size = int((labels == cls).sum())
        n_val = int(round(size * val_fraction))
        if n_val in (0, size):
            name = CLASS_NAMES.get(int(cls), str(cls))
            needed = next(n for n in range(2, 10_000) if 0 < round(n * val_fraction) < n)  # the rounding above
            raise PipelineError(
                f"only {size} training review(s) of class {name}: split.val_fraction={val_fraction} leaves "
                f"{'validation' if n_val == 0 else 'training'} without any; a stratified split needs at least "
                f"{needed} per class (use more reviews)"
            )
        targets.append(n_val)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    group_ids, inverse = np.unique(groups, return_inverse=True)
    per_group = np.stack([np.bincount(inverse, weights=labels == cls, minlength=len(group_ids)) for cls in classes], 1)
    rng = np.random.default_rng(seed)
    room = np.array(targets, dtype=float)
    in_val = np.zeros(len(group_ids), bool)
    order = rng.permutation(len(group_ids))
    fits = lambda g: (per_group[g] <= room).all()
    closer = lambda g: np.abs(room - per_group[g]).sum() < np.abs(room).sum()
    for accept in (fits, closer):  # fill without overshooting, then close what gap remains
        for g in order:
            if not in_val[g] and room.any() and accept(g):
                in_val[g] = True
                room -= per_group[g]
    val = np.flatnonzero(in_val[inverse])
    train = np.flatnonzero(~in_val[inverse])
    if len(val) == 0 or len(train) == 0:
        raise PipelineError(f"no split with split.val_fraction={val_fraction}: a single group holds too many reviews")
    for side, idx in (("validation", val), ("training", train)):
        for cls in np.setdiff1d(classes, labels[idx]):
            # a side with one class scores every model alike (the exercise's split): whole groups too large
            # for the targets
            holders = int((per_group[:, list(classes).index(cls)] > 0).sum())
            what = f"{holders} movie(s)" if group_by == "movie" else f"{holders} group(s) of reviews with one text"
            raise PipelineError(
                f"split.val_fraction={val_fraction} leaves {side} without a {CLASS_NAMES.get(int(cls), cls)} review: "
                f"all {int((labels == cls).sum())} lie in {what}, which stay whole; use more reviews"
                + (", lower split.val_fraction" if side == "training" else "")
                + (" or split.group_by: review" if group_by == "movie" else "")
            )
    return rng.permutation(train), rng.permutation(val)


def split_indices(data, val_fraction, seed, group_by):
    """(train_idx, val_idx) of the tokenized training set `data` (a dict of arrays as the tokenize stage writes).

    Raises PipelineError when `group_by` is movie and some reviews have no movie.
    """
    movies = None
    if group_by == "movie":
        unknown = int((data["movies"] == "").sum())
        if unknown:
            raise PipelineError(
                f"split.group_by is movie but {unknown} training review(s) have no movie (urls_*.txt missing or "
                "not one line per review: metrics/ingest.json, movie_files): restore those files or set "
                "split.group_by: review"
            )
        movies = data["movies"]
    return stratified_split(data["labels"], val_fraction, seed, groups_of(data["text_hashes"], movies), group_by)


def split_report(data, train_idx, val_idx):
    """Reviews, movies and class balance per side, the movies both sides share, and duplicates (a dict
    for metrics/split.json)."""
    labels, movies, hashes = data["labels"], data["movies"], data["text_hashes"]
    report = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        report[name] = {
            "reviews": int(len(idx)),
            "movies": int(len(np.unique(movies[idx][movies[idx] != ""]))),
            "pos": int(labels[idx].sum()),
            "neg": int(len(idx) - labels[idx].sum()),
            "pos_fraction": round(float(labels[idx].mean()), 4),
        }
    shared = np.intersect1d(movies[train_idx], movies[val_idx])
    shared = shared[shared != ""]
    report["movie_overlap"] = {
        "movies_on_both_sides": int(len(shared)),
        "val_reviews_of_a_training_movie": round(float(np.isin(movies[val_idx], shared).mean()), 4),
    }
    report["duplicates"] = {
        "extra_copies_in_train": int(len(hashes) - len(np.unique(hashes))),
        "texts_on_both_sides": int(len(np.intersect1d(hashes[train_idx], hashes[val_idx]))),
    }
    report["balanced"] = abs(report["train"]["pos_fraction"] - report["val"]["pos_fraction"]) < 0.01
    return report


def split_reviews(params_path, paths):
    """The split stage: a seeded, stratified train/validation split of the training reviews, grouped as
    split.group_by says.

    `paths` maps train, out_dir, report to files, as dvc.yaml names them.
    """

    params = load_section(params_path, "split", SCHEMA)
    data = load_npz(paths["train"], "tokenized training set")
    missing = {"movies", "text_hashes"} - set(data)
    if missing:
        raise PipelineError(
            f"{paths['train']} lacks {sorted(missing)}: it was made before movies were read; rerun dvc repro"
        )
    # a review with no vocabulary word teaches nothing and tells nothing about a model: leave it out
    empty = without_known_words(data["ids"])
    data = {k: v[~empty] for k, v in data.items()}
    train_idx, val_idx = split_indices(data, params["val_fraction"], params["seed"], params["group_by"])
    for name, idx in (("train", train_idx), ("val", val_idx)):
        save_npz(f"{paths['out_dir']}/{name}.npz", **{k: v[idx] for k, v in data.items()})
    report = {
        "group_by": params["group_by"],
        **split_report(data, train_idx, val_idx),
        "dropped_without_known_words": int(empty.sum()),
    }
    write_json(paths["report"], report)
    print(
        f"split: by {params['group_by']}: {report['train']['reviews']} train / {report['val']['reviews']} val reviews, "
        f"{report['movie_overlap']['movies_on_both_sides']} movies on both sides"
    )
    if not report["balanced"]:
        grouped = params["group_by"] == "movie"
        print(
            f"split: warning: validation is {report['val']['pos_fraction']:.1%} positive and training "
            f"{report['train']['pos_fraction']:.1%}: whole "
            f"{'movies' if grouped else 'groups of reviews with one text'} "
            "could not be shared out evenly, so validation accuracy weighs the classes unlike training; "
            "use more reviews" + (" (another split.seed may help), or split.group_by: review" if grouped else ""),
            file=sys.stderr,
        )
