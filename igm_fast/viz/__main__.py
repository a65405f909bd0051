"""`python -m igm_fast.viz`: pictures of runs and samples, written into the run dir.

    python -m igm_fast.viz curves RUN            loss / lr / eval curves      -> RUN/curves.png
    python -m igm_fast.viz tsne RUN              t-SNE of test features       -> RUN/tsne.png
    python -m igm_fast.viz confusion RUN         normalised confusion matrix  -> RUN/confusion.png
    python -m igm_fast.viz denoise RUN [--t T]   x_t, x0_hat, original        -> RUN/denoise.png
    python -m igm_fast.viz skeleton ucla:3 [--out FILE.gif]   (or DATASET:SPLIT:INDEX, or a .npy sample)

RUN is a training run (metrics.jsonl, encoder.pt, checkpoint_last.pt) or, for tsne / confusion,
an eval run (`python -m igm_fast.eval --out RUN`); on a training run they evaluate KNN first.
"""
import argparse
import re
import sys
from pathlib import Path

from igm_fast import viz  # noqa: F401  (selects the Agg backend before pyplot loads)
from igm_fast.io import InputError


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m igm_fast.viz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("curves", "tsne", "confusion"):
        sub.add_parser(name).add_argument("run")
    den = sub.add_parser("denoise")
    den.add_argument("run")
    den.add_argument("--t", type=int, default=300, help="diffusion timestep of the noisy input")
    den.add_argument("--index", type=int, default=0, help="test sample")
    sk = sub.add_parser("skeleton")
    sk.add_argument("source", help="DATASET:INDEX, DATASET:SPLIT:INDEX or a .npy sample")
    sk.add_argument("--data-root")
    sk.add_argument("--out", help="GIF path (default skeleton_<source>.gif)")
    args = p.parse_args(argv)
    try:
        if args.command == "curves":
            from igm_fast.viz.curves import plot_curves
            out = plot_curves(args.run)
        elif args.command == "tsne":
            from igm_fast.viz.tsne import plot_tsne
            out = plot_tsne(args.run)
        elif args.command == "confusion":
            from igm_fast.viz.confusion import plot_confusion
            out = plot_confusion(args.run)
        elif args.command == "denoise":
            from igm_fast.viz.denoise import plot_denoise
            out = plot_denoise(args.run, t=args.t, index=args.index)
        else:
            from igm_fast.viz.skeleton import animate_skeleton, load_sample
            x, title = load_sample(args.source, args.data_root)
            default = f"skeleton_{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(args.source).stem)}.gif"
            out = animate_skeleton(x, args.out or default, title)
    except (InputError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
