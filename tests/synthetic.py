"""Small aclImdb-shaped archives for tests: labels carried by marker words."""

import io
import random
import tarfile

FILLER = "the movie film plot actor scene story it was and a of to is in that this".split()
POSITIVE = ["wonderful", "brilliant", "superb"]
NEGATIVE = ["awful", "terrible", "boring"]


def review(rng, label, min_words=5, max_words=60):
    words = [rng.choice(FILLER) for _ in range(rng.randint(min_words, max_words))]
    markers = POSITIVE if label == "pos" else NEGATIVE
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(markers))
    text = " ".join(words)
    return text[0].upper() + text[1:] + ". <br /><br />Really!"


MOVIE_SIZE = 4  # reviews per label per synthetic movie


def movie_of(split, i, per_movie=MOVIE_SIZE):
    """The synthetic movie of review i of a split: per_movie pos and per_movie neg reviews each; none
    shared by train and test."""
    return f"tt{(5_000_000 if split == 'test' else 1_000_000) + i // per_movie:07d}"


def make_archive(path, per_label=60, unsup=20, seed=0, extra=None, skip=(), urls=True):
    """Write an aclImdb_v1.tar.gz-shaped archive; `extra` maps member names to bytes.

    With `urls`, each folder has its urls_*.txt, line i naming review i's movie (movie_of).
    """
    rng = random.Random(seed)
    members = {}
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            if f"{split}/{label}" in skip:
                continue
            for i in range(per_label):
                rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                members[f"aclImdb/{split}/{label}/{i}_{rating}.txt"] = review(rng, label).encode()
            if urls:
                members[f"aclImdb/{split}/urls_{label}.txt"] = "".join(
                    f"http://www.imdb.com/title/{movie_of(split, i)}/usercomments\n" for i in range(per_label)
                ).encode()
    for i in range(unsup):
        members[f"aclImdb/train/unsup/{i}_0.txt"] = review(rng, rng.choice(["pos", "neg"])).encode()
    if urls:
        members["aclImdb/train/urls_unsup.txt"] = "".join(
            f"http://www.imdb.com/title/{movie_of('unsup', i)}/usercomments\n" for i in range(unsup)
        ).encode()
    members["aclImdb/README"] = b"synthetic"
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
