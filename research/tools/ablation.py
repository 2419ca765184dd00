"""An ablation of one architecture's training terms, on the validation split: each variant trains through
the train stage (stages/train.py, dvc.yaml's arguments) with the architecture's params.yaml section
changed as the variant says, and its validation figures are tabulated. Test accuracy is not
looked at here; score the variant chosen on validation afterwards with the evaluate stage.

Each variant writes OUT/<variant>/{metrics,timing,params}.json/yaml and its checkpoint to
data/ablation/<arch>/<variant>.pt (under --root); a variant whose metrics exist is skipped, so an interrupted
ablation resumes where it stopped. OUT/summary.md tabulates whatever variants exist.

    python research/tools/ablation.py --arch bilstm_mixed --out research/studies/mixed_ablation \
        --variant adv vat_eps=0 entropy_weight=0 unsup_ratio=0 \
        --variant adv+vat entropy_weight=0 \
        --variant adv+entropy vat_eps=0 \
        --variant all

`--workers 2` trains two variants side by side, one thread each (their seconds are then not
comparable with a run alone).
"""

import argparse
import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from imdb_rnn.config import arch_settings
from imdb_rnn.params import GROUPS, read_architectures, read_params, stage_arguments
from imdb_rnn.pipeline import PipelineError, read_json, run_main, write_text

ROOT = Path(__file__).resolve().parents[2]


def parse_value(text):
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)  # as `dvc exp run -S` reads a value: 0 is an int, 0.02 a float


def variants_of(specs):
    """{name: {key: value}} from --variant NAME [KEY=VALUE ...] lists."""
    out = {}
    for name, *changes in specs:
        bad = [c for c in changes if "=" not in c]
        if bad:
            raise PipelineError(f"variant {name}: {bad[0]!r} is not KEY=VALUE")
        out[name] = {k: parse_value(v) for k, v in (c.split("=", 1) for c in changes)}
    return out


def train_variant(arch, name, change, params, out, threads, seed, root):
    folder = out / name
    if (folder / "metrics.json").exists():
        print(f"{name}: done before, skipped", flush=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    changed = copy.deepcopy(params)
    changed[arch].update(change)
    if threads:
        changed["train"]["threads"] = threads
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    arch_settings(params_file, arch, seed)  # a bad variant is a one-line error before any training
    args = stage_arguments(ROOT / "dvc.yaml", "train", arch, seed)
    replace = {
        "--out": f"data/ablation/{arch}/{name}.pt",
        "--metrics": str(folder / "metrics.json"),
        "--timing": str(folder / "timing.json"),
        "--live": f"data/ablation/{arch}/{name}-live",
        "--resume": f"data/ablation/{arch}/{name}-resume.pt",
    }
    args = [replace.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    group = read_architectures(params_file)[arch]
    if GROUPS[group] != "none":
        args += ["--pretrained", f"data/pretrain/{GROUPS[group]}.pt"]
    if changed[arch].get("unsup_ratio"):
        args += ["--unlabelled", "data/tokens/unsup.npz"]
    with open(folder / "log.txt", "w") as log:
        result = subprocess.run(
            [sys.executable, str(ROOT / "stages/train.py"), *args, "--params", str(params_file)],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if result.returncode:
        raise PipelineError(f"variant {name} failed: see {folder / 'log.txt'}")
    print(
        f"{name}: {read_json(folder / 'metrics.json', 'metrics')['val_accuracy']:.4f} validation accuracy", flush=True
    )


def summary(arch, variants, out):
    rows = [
        "| variant | change | validation accuracy | best epoch / run | train seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, change in variants.items():
        folder = out / name
        if not (folder / "metrics.json").exists():
            continue
        m, t = read_json(folder / "metrics.json", "metrics"), read_json(folder / "timing.json", "timing")
        described = ", ".join(f"{k}={v}" for k, v in change.items()) or "as params.yaml"
        rows.append(
            f"| {name} | {described} | {m['val_accuracy']:.4f} | {m['best_epoch']} / {m['epochs_run']} | "
            f"{t['train_seconds']:.0f} ({t['threads']} threads) |"
        )
    write_text(out / "summary.md", f"# Ablation of {arch} (validation split)\n\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE]")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding data/ (default: this repository)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    params = read_params(args.params)
    if args.arch not in params:
        raise PipelineError(f"unknown architecture {args.arch!r}: no such section in {args.params}")
    variants = variants_of(args.variant)
    out = args.out.resolve()
    threads = 1 if args.workers > 1 else 0
    with ThreadPoolExecutor(args.workers) as pool:
        for future in [
            pool.submit(train_variant, args.arch, name, change, params, out, threads, args.seed, args.root)
            for name, change in variants.items()
        ]:
            future.result()
    summary(args.arch, variants, out)


if __name__ == "__main__":
    sys.exit(run_main(main))
