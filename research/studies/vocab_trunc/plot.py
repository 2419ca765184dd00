"""Validation accuracy per epoch of every width, vocabulary and truncation variant on the movie split,
one panel per seed: studies/vocab_trunc/validation_curves.png. Run from research/ after the studies (its paths are relative to it)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

VARIANTS = {  # label: the study folder whose runs/ hold it
    "128 units, head kept (params.yaml until 2026-11-30)": "studies/h128_movie",
    "256 units": "studies/h256_movie",
    "50,000 words from train + unsup": "studies/vocab_trunc/vocab50k",
    "head + tail truncation": "studies/vocab_trunc/both",
    "256 units + head + tail (params.yaml now)": "studies/vocab_trunc/h256_both",
}
SEEDS = (42, 7, 11)  # seed 11: the chosen settings only

fig, axes = plt.subplots(1, len(SEEDS), figsize=(15, 4.2), sharey=True)
for ax, seed in zip(axes, SEEDS):
    for color, (label, folder) in enumerate(VARIANTS.items()):
        path = Path(folder, "runs", f"movie-bilstm_w2v_adv-{seed}.json")
        if not path.exists():
            continue
        run = json.loads(path.read_text())
        epochs = [row["epoch"] for row in run["history"]]
        ax.plot(epochs, [row["val_accuracy"] for row in run["history"]], marker="o", label=label, color=f"C{color}")  # one colour a variant in every panel
        kept = run["rules"]["val_accuracy"]
        ax.annotate(f"test {kept['test_accuracy']:.4f}", (kept["epoch"], kept["val_accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_title(f"bilstm_w2v_adv, movie split, seed {seed}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("validation accuracy")
axes[0].legend(fontsize=7, loc="lower right")
fig.suptitle(
    "Width, vocabulary and truncation variants: validation accuracy per epoch (test accuracy at the kept epoch)",
    fontsize=10,
)
fig.tight_layout()
fig.savefig("studies/vocab_trunc/validation_curves.png", dpi=110)
print("studies/vocab_trunc/validation_curves.png")
