"""Attention report: the test reviews an attention model was surest about, right and wrong,
with every word it read shaded by the attention weight it got.

Two renderings of the same examples: a self-contained HTML page (inline CSS, a tooltip with each
weight) and a PNG (matplotlib) for `dvc plots`. Shading is relative within each review (the
heaviest word is darkest), since weights of a 20-word and a 500-word review differ by 25x.
"""

import html
import string
from dataclasses import dataclass

import numpy as np

from .inference import accuracy, correct
from .pipeline import atomic_path, write_text
from .predict import Explanation

SHADE_RGB = (214, 39, 40)  # the red of matplotlib's tab:red
MAX_ALPHA = 0.8  # the heaviest word's shade
FONT_PT = 8  # PNG font size
LINE_PT = 1.55 * FONT_PT
PNG_WIDTH_IN = 13


@dataclass
class Example:
    kind: str  # "right" or "wrong"
    review_id: int
    truth: int  # 1 = positive
    explanation: Explanation


def pick_examples(logits, labels, n):
    """Indices of the n most confident right and the n most confident wrong predictions.

    Confidence is |logit| (probabilities saturate at 1.0 in float32 and would tie); each list
    takes positive and negative reviews in turn, so both classes are shown.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    order = np.argsort(-np.abs(logits), kind="stable")
    right = correct(logits[order], labels[order])
    return tuple(_alternate(order[mask], labels, n) for mask in (right, ~right))


def _alternate(indices, labels, n):
    """Up to n of `indices` (most confident first), taking each true class in turn while both last."""
    by_class = [list(indices[labels[indices] == 1]), list(indices[labels[indices] != 1])]
    chosen = []
    while len(chosen) < n and any(by_class):
        for group in by_class:
            if group and len(chosen) < n:
                chosen.append(group.pop(0))
    return np.array(chosen, np.int64)


def shades(weights):
    """Opacity per word: weight relative to the review's heaviest word (MAX_ALPHA keeps text legible)."""
    peak = float(np.max(weights)) if len(weights) else 1.0
    return MAX_ALPHA * np.asarray(weights, np.float64) / (peak or 1.0)


def truth_name(truth):
    return "pos" if truth == 1 else "neg"


def headline(example):
    e = example.explanation
    read = f"{len(e.words)} words read" + (f" of {e.n_words}" if e.n_words > len(e.words) else "")
    return (
        f"review {example.review_id} | truth {truth_name(example.truth)} "
        f"| predicted {e.label} p(pos)={e.probability:.3f} | {read}"
    )


# ------------------------------------------------------------------ HTML

CSS = string.Template("""
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.review { margin: 1.2em 0; padding: .6em .8em; border-left: 4px solid #999; background: #fafafa; }
.review.right { border-color: #2ca02c; } .review.wrong { border-color: #d62728; }
.head { font-size: .9em; color: #555; margin-bottom: .4em; }
.head b.right { color: #2ca02c; } .head b.wrong { color: #d62728; }
.words { line-height: 1.9; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
.words span { padding: .1em .15em; border-radius: 3px; }
.words span.unk { font-style: italic; text-decoration: underline dotted; }
.legend { font-size: .85em; color: #555; }
.scale { display: inline-block; width: 10em; height: .9em; vertical-align: middle;
         background: linear-gradient(to right, rgba($rgb,0), rgba($rgb,$alpha)); border: 1px solid #ccc; }
""").substitute(rgb=",".join(map(str, SHADE_RGB)), alpha=MAX_ALPHA)


def html_words(e):
    r, g, b = SHADE_RGB
    spans = []
    for word, weight, alpha, known in zip(e.words, e.weights, shades(e.weights), e.known):
        unk = "" if known else ' class="unk"'
        note = "" if known else " (not in the vocabulary: read as <unk>)"
        spans.append(
            f'<span{unk} style="background:rgba({r},{g},{b},{alpha:.3f})" '
            f'title="{float(weight):.4f}{html.escape(note)}">'
            f"{html.escape(word)}</span>"
        )
    return " ".join(spans) or "<i>(no words)</i>"


def html_example(example):
    e = example.explanation
    return (
        f'<div class="review {example.kind}"><div class="head"><b class="{example.kind}">{example.kind}</b> | '
        f'{html.escape(headline(example))}</div>\n<div class="words">{html_words(e)}</div></div>'
    )


def render_html(right, wrong, summary):
    """The report page as one string: no scripts, no external files."""
    sections = []
    for title, examples in (("Most confident right predictions", right), ("Most confident wrong predictions", wrong)):
        body = "\n".join(html_example(x) for x in examples) or "<p>None among the test reviews.</p>"
        sections.append(f"<h2>{title}</h2>\n{body}")
    facts = " | ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in summary.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Attention report</title>
<style>{CSS}</style></head>
<body>
<h1>Where the attention model looks</h1>
<p>{facts}</p>
<p class="legend">Each word the model read (cleaned, in order; long reviews are cut as in training) is shaded by its
attention weight, relative to the heaviest word of its review: <span class="scale"></span> 0 &rarr; max.
Hover a word for its weight. Italic, underlined: not in the vocabulary.</p>
{chr(10).join(sections)}
</body></html>
"""


# ------------------------------------------------------------------ PNG


def wrap(words, width):
    """Lay words out in lines of at most `width` characters: [(line, column, word index)]."""
    out, line, col = [], 0, 0
    for i, word in enumerate(words):
        if col and col + len(word) > width:
            line, col = line + 1, 0
        out.append((line, col, i))
        col += len(word) + 1
    return out


def monospace_advance(dpi):
    """Width of one monospace character in points as Agg really draws it (hinting rounds glyph advances)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=dpi)
    probe = fig.text(0, 0, "x" * 200, family="monospace", fontsize=FONT_PT)
    pixels = probe.get_window_extent(FigureCanvasAgg(fig).get_renderer()).width / 200
    return pixels * 72 / dpi


def render_png(right, wrong, path, dpi=110):
    """Every example as wrapped monospace text over word boxes shaded by attention weight.

    Coordinates are in characters (x) and lines (y), so a word's box sits exactly under its letters.
    """
    import warnings

    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    width_chars = PNG_WIDTH_IN * 72 / monospace_advance(dpi)
    blocks, y = [], 1.0  # y in lines, top down
    for title, examples in (("Most confident right predictions", right), ("Most confident wrong predictions", wrong)):
        blocks.append(("section", y, title))
        y += 1.6
        if not examples:
            blocks.append(("note", y, "None among the test reviews."))
            y += 1.4
        for example in examples:
            words = example.explanation.words
            layout = wrap(words, int(width_chars) - 3)
            blocks.append(("review", y, (example, words, layout)))
            y += 1.2 + (layout[-1][0] + 1 if layout else 1) + 0.8
    fig = Figure(figsize=(PNG_WIDTH_IN, y * LINE_PT / 72 + 0.2), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width_chars)
    ax.set_ylim(y + 0.2, 0)
    ax.axis("off")
    text = dict(family="monospace", fontsize=FONT_PT, va="center", parse_math=False)
    boxes, colors = [], []
    for kind, top, content in blocks:
        if kind != "review":
            ax.text(
                1,
                top,
                content,
                **dict(
                    text,
                    fontsize=FONT_PT + 3 if kind == "section" else FONT_PT,
                    weight="bold" if kind == "section" else "normal",
                ),
            )
            continue
        example, words, layout = content
        color = "#2ca02c" if example.kind == "right" else "#d62728"
        ax.text(1, top, f"{example.kind.upper()}  {headline(example)}", color=color, **dict(text, weight="bold"))
        for line, col, line_text in _lines(layout, words):
            ax.text(1 + col, top + 1.2 + line, line_text, **text)
        for (line, col, i), alpha in zip(layout, shades(example.explanation.weights)):
            boxes.append(Rectangle((1 + col - 0.2, top + 1.2 + line - 0.5), len(words[i]) + 0.4, 1.0))
            colors.append((*(c / 255 for c in SHADE_RGB), float(alpha)))
    ax.add_collection(PatchCollection(boxes, facecolors=colors, edgecolors="none", zorder=0))
    with warnings.catch_warnings():  # glyphs the font lacks (rare scripts) are drawn as boxes
        warnings.simplefilter("ignore")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")


def _lines(layout, words):
    """Group a wrap() layout into (line, first column, text of the line) for one text call per line."""
    lines = {}
    for line, col, i in layout:
        start, parts = lines.setdefault(line, (col, []))
        parts.append(words[i])
    return [(line, start, " ".join(parts)) for line, (start, parts) in lines.items()]


# ------------------------------------------------------------------ the whole report


def build_examples(predictor, texts, labels, review_ids, n):
    """Score every (already cleaned) test review, pick and explain the most confident right/wrong ones."""
    logits = predictor.logits(texts, cleaned=True)
    right_idx, wrong_idx = pick_examples(logits, labels, n)
    chosen = np.concatenate([right_idx, wrong_idx]).astype(np.int64)
    explanations = predictor.explain([texts[i] for i in chosen], cleaned=True)
    examples = [
        Example("right" if k < len(right_idx) else "wrong", int(review_ids[i]), int(labels[i]), e)
        for k, (i, e) in enumerate(zip(chosen, explanations))
    ]
    summary = {
        "model": predictor.arch,
        "test reviews scored": len(texts),
        "test accuracy": f"{accuracy(logits, labels):.4f}",
    }
    return examples[: len(right_idx)], examples[len(right_idx) :], summary


def write_report(right, wrong, summary, html_path, png_path):
    write_text(html_path, render_html(right, wrong, summary))
    render_png(right, wrong, png_path)
