"""Prepare datasets into the fast layout: `python -m igm_fast.data.prepare SOURCE [args]`.

    synth                                  generate the built-in dataset (synth, synth-xview)
    ucla   --raw DIR/all_sqe               NW-UCLA from the CTR-GCN json release
    ntu60 | ntu120 --raw DIR [--workers N] [--missing-list FILE]
    pku1 | pku2 --skeletons DIR --labels DIR --splits DIR
    npz FILE --name NAME --joints V        import a MAMP / CTR-GCN npz

Every command writes under --out (default: $IGM_DATA or ./data_cache), where
`igm_fast.data.dataset.load_split(NAME, ...)` finds it, and prints a short summary.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from igm_fast.data import layout, ntu, pku, synth, ucla
from igm_fast.data.dataset import default_data_root
from igm_fast.io import InputError


def class_names_for(name, num_classes):
    """The action names of a known dataset when `name` starts with its name, else "class 1", ..."""
    known = {"ntu60": ntu.CLASS_NAMES["ntu60"], "ntu120": ntu.CLASS_NAMES["ntu120"], "pku": pku.CLASS_NAMES,
             "ucla": ucla.CLASS_NAMES, "synth": synth.CLASS_NAMES}
    for prefix, names in known.items():
        if Path(name).name.startswith(prefix) and len(names) >= num_classes:
            return list(names)
    return [f"class {i + 1}" for i in range(num_classes)]


def prepare_npz(path, out_dir, name, num_joints, num_bodies=2):
    """Import a MAMP/CTR-GCN npz as `{out_dir}/{name}`. Lengths are counted as MAMP counts them
    (non-zero frames); samples with no non-zero frame are skipped and reported."""
    data = layout.read_mamp_npz(path, num_joints, num_bodies)
    splits, summary = {}, {"skipped": []}
    for split, (x, labels, names) in data.items():
        names = names or [f"{split}_{i:06d}" for i in range(len(x))]
        lengths = layout.valid_lengths(x)
        keep = np.flatnonzero(lengths > 0)
        summary["skipped"] += [f"{split} {names[i]}: all frames zero" for i in np.flatnonzero(lengths == 0)]
        splits[split] = (x[keep], lengths[keep], labels[keep], [names[i] for i in keep])
    num_classes = 1 + max(int(labels.max(initial=0)) for _, _, labels, _ in splits.values())
    max_frames = data["train"][0].shape[2]
    target = layout.write_dataset(Path(out_dir) / name, name, class_names_for(name, num_classes), num_joints,
                                  num_bodies, max_frames, splits)
    summary[name] = {"train": len(splits["train"][2]), "test": len(splits["test"][2]), "path": str(target)}
    return summary


def print_summary(summary, indent=""):
    """Nested summary dicts as indented lines; long lists (skipped samples) shortened."""
    for key, value in summary.items():
        if isinstance(value, dict) and value:
            print(f"{indent}{key}:")
            print_summary(value, indent + "  ")
        elif isinstance(value, (list, tuple)):
            print(f"{indent}{key}: {len(value)}")
            for item in value[:10]:
                print(f"{indent}  {item}")
            if len(value) > 10:
                print(f"{indent}  ... {len(value) - 10} more")
        else:
            print(f"{indent}{key}: {value if value != {} else 0}")


def benchmark_list(text):
    """argparse type: a comma-separated subset of the synth benchmarks."""
    items = tuple(b for b in text.split(",") if b)
    if not items or set(items) - set(synth.BENCHMARKS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of {','.join(synth.BENCHMARKS)}")
    return items


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m igm_fast.data.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)

    def add(name, help):
        p = sub.add_parser(name, help=help)
        p.add_argument("--out", type=Path, default=None, help="data root (default: $IGM_DATA or ./data_cache)")
        return p

    p = add("synth", "generate the built-in synthetic dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-class", type=int, default=200)
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--benchmarks", type=benchmark_list, default=synth.BENCHMARKS,
                   help="comma-separated subset of xsub,xview")
    p.add_argument("--no-npz", action="store_true", help="skip the MAMP npz files")
    p = add("ucla", "NW-UCLA from the CTR-GCN json release")
    p.add_argument("--raw", type=Path, required=True, help="the all_sqe folder of *.json files")
    for version in ("ntu60", "ntu120"):
        p = add(version, f"{version.upper()} from raw .skeleton files")
        p.add_argument("--raw", type=Path, required=True, help="folder of .skeleton files")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--missing-list", type=Path, default=None, help="samples_with_missing_skeletons.txt")
    for version in pku.VERSIONS:
        p = add(version, f"PKU-MMD {'I' if version == 'pku1' else 'II'} from skeleton, label and split files")
        p.add_argument("--skeletons", type=Path, required=True, help="folder of per-video skeleton .txt files")
        p.add_argument("--labels", type=Path, required=True, help="folder of per-video label files")
        p.add_argument("--splits", type=Path, required=True, help="folder with cross-subject / cross-view files")
    p = add("npz", "import a MAMP / CTR-GCN npz (x_train (N, T, M*V*3), y_train, x_test, y_test)")
    p.add_argument("file", type=Path)
    p.add_argument("--name", required=True, help="dataset name: the directory under --out")
    p.add_argument("--joints", type=int, required=True, help="joints per body (25 NTU/PKU, 20 NW-UCLA)")
    p.add_argument("--bodies", type=int, default=2)
    return parser


def run(args, out):
    if args.source == "synth":
        return synth.prepare_synth(out, args.seed, args.samples_per_class, args.subjects,
                                   benchmarks=args.benchmarks,
                                   npz=not args.no_npz)
    if args.source == "ucla":
        return ucla.prepare(args.raw, out)
    if args.source in ("ntu60", "ntu120"):
        return ntu.prepare(args.raw, out, version=args.source, workers=args.workers,
                           missing_list=args.missing_list)
    if args.source in pku.VERSIONS:
        return pku.prepare(args.skeletons, args.labels, args.splits, out, version=args.source)
    return prepare_npz(args.file, out, args.name, args.joints, args.bodies)


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out if args.out is not None else default_data_root()
    try:
        summary = run(args, out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print_summary(summary)
    print(f"written under {Path(out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
