"""Train and score an ensemble of CentreNet (or the seed ResNet) on a dataset, beside the ladder.

Run from the repository root, e.g. on a demo-learning run's dataset::

    nice -n 10 .venv/bin/python benchmarks/bench_centre.py \\
        --dataset results/demo/dataset.h5 --out /tmp/centre_demo \\
        [--splits blocked random] [--targets E_GPa H_GPa] [--members 3] \\
        [--epochs 15] [--lr 1e-3] [--batch-size 32] [--threads 1] \\
        [--architecture centre] [--centre '{"patch_um": 4.32}'] \\
        [--learning-dir results/demo/learning] [--boosting] [--json out.json]
        [--map-area results/demo/A4/calibrated.zarr --map-members 1 --check-windows 2000]

Per split and target it trains ``--members`` members with
:func:`microprop.learning.train` exactly as rule ``train_model`` does (seed
``--seed``, member index mixed in; the work directories under ``--out``, so
a killed run resumes), scores the ensemble with
:func:`microprop.learning.evaluate` (as rule ``evaluate_model``) and prints
its test R2 and MAE with the wall time of training. With ``--learning-dir``
(a run's ``results/<specimen>/learning``) the same table carries the ladder's
rungs (``ladder.csv``) and the run's ResNet ensemble
(``<split>/<target>/summary.json``) on the same test crops. With
``--boosting`` the ladder's boosting rung is fitted here too
(:func:`microprop.learning.ladder`, its test predictions kept), and every
figure gets a paired percentile bootstrap 95 % interval
(:func:`microprop.learning.bootstrap_weights`: crops on the random split,
whole spatial blocks on the blocked one; 2000 resamples shared by all
models), with the interval of the difference ``R2(model) - R2(boosting)``.
A finished member (its ``last.pt`` at ``--epochs``) is not trained again, so
a second call only scores. With ``--map-area`` (a ``calibrated.zarr``, read
only) the first ``--map-members`` members of the first split and target map
it densely at ``--map-step-um`` (:func:`microprop.learning.dense_predict_map`,
exact for CentreNet), timed, and the map is compared with exact per-window
inference on ``--check-windows`` sampled windows
(:func:`microprop.learning.dense_agreement`). The defaults are
the demo's CPU-reduced settings (``configs/demo_learning.yaml``,
``learning.cpu``: 15 epochs, lr 1e-3). Timings on a shared machine are
contended: the load average is printed.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def _ladder_rows(learning_dir, split, target):
    import pandas as pd

    path = Path(learning_dir) / "ladder.csv"
    if not path.exists():
        return []
    t = pd.read_csv(path)
    if "split" in t.columns:
        t = t[t["split"] == split]
    if "target" in t.columns:
        t = t[t["target"] == target]
    rows = []
    for _, r in t.iterrows():
        rows.append({"model": str(r.get("model")), "R2": float(r.get("R2", r.get("r2", float("nan")))),
                     "MAE": float(r.get("MAE", r.get("mae", float("nan"))))})
    return rows


def _resnet_row(learning_dir, split, target):
    path = Path(learning_dir) / split / target / "summary.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    m = s["metrics"]["test"]["ensemble"]
    return {"model": f"ResNet x{s.get('n_members')}", "R2": float(m["R2"]), "MAE": float(m["MAE"])}


def _finished(work, epochs):
    """True when ``work/last.pt`` has run ``epochs`` epochs (then the member is only scored)."""
    import torch

    last = Path(work) / "last.pt"
    if not last.exists():
        return False
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) >= int(epochs)


def _intervals(pred, boost, split, target, args):
    """Paired bootstrap intervals of the ensemble, the boosting rung and their difference."""
    import numpy as np
    from microprop import learning

    test = pred[pred["split"] == "test"].sort_values("index")
    y, yhat = test["y"].to_numpy(), test["mean"].to_numpy()
    groups = test["block"].to_numpy() if split == "blocked" and "block" in test else None
    w = learning.bootstrap_weights(len(y), groups=groups, n_boot=args.n_boot, seed=0)
    reps = {args.architecture: learning.bootstrap_metrics(y, yhat, w)}
    point = {args.architecture: learning.regression_metrics(y, yhat)}
    if boost is not None:
        b = boost[(boost["split"] == split) & (boost["target"] == target)
                  & (boost["model"] == "boosting")].set_index("index").loc[test["index"]]
        if not np.allclose(b["y"].to_numpy(), y):
            raise SystemExit("boosting and the ensemble disagree on the test targets")
        reps["boosting"] = learning.bootstrap_metrics(y, b["pred"].to_numpy(), w)
        point["boosting"] = learning.regression_metrics(y, b["pred"].to_numpy())
        reps["difference to boosting"] = {
            k: reps[args.architecture][k] - reps["boosting"][k] for k in ("R2", "MAE")}
        point["difference to boosting"] = {
            k: point[args.architecture][k] - point["boosting"][k] for k in ("R2", "MAE")}
    out = {}
    for name, r in reps.items():
        out[name] = {k: (float(point[name][k]), *map(float, learning.percentile_interval(r[k])))
                     for k in ("R2", "MAE")}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--splits", nargs="+", default=["blocked", "random"])
    ap.add_argument("--targets", nargs="+", default=["E_GPa", "H_GPa"])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--architecture", default="centre", choices=["centre", "seed_resnet"])
    ap.add_argument("--centre", default="{}", help="CentreNet options as JSON (learning.centre)")
    ap.add_argument("--input-px", type=int, default=None, help="seed_resnet only (the demo: 32)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--learning-dir", default=None)
    ap.add_argument("--boosting", action="store_true",
                    help="fit the ladder's boosting rung here, for paired bootstrap intervals")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--map-area", default=None, help="calibrated.zarr to map densely (read only)")
    ap.add_argument("--map-members", type=int, default=1)
    ap.add_argument("--map-step-um", type=float, default=1.0)
    ap.add_argument("--check-windows", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch
    from microprop import learning

    torch.set_num_threads(int(args.threads))
    centre = json.loads(args.centre) or None
    out = Path(args.out)
    results = []
    boost = None
    if args.boosting:
        t0 = time.perf_counter()
        _, boost = learning.ladder(args.dataset, targets=tuple(args.targets),
                                   splits=tuple(args.splits), models=("boosting",),
                                   return_predictions=True)
        print(f"boosting rung fitted in {time.perf_counter() - t0:.0f} s")
    for split in args.splits:
        for target in args.targets:
            ckpts, walls = [], []
            for member in range(int(args.members)):
                work = out / split / target / f"m{member}"
                ckpts.append(work / "best.pt")
                if _finished(work, args.epochs):
                    walls.append(float("nan"))
                    continue
                t0 = time.perf_counter()
                learning.train(args.dataset, target, work, split=split, epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr, device=args.device,
                               seed=args.seed, member=member, num_threads=args.threads,
                               log_every=0, architecture=args.architecture,
                               arch_kwargs=centre if args.architecture == "centre" else None,
                               input_px=args.input_px if args.architecture == "seed_resnet"
                               else None)
                walls.append(time.perf_counter() - t0)
            ev = learning.evaluate(ckpts, args.dataset, split=split, device=args.device,
                                   target=target)
            test = ev["metrics"]["test"]["ensemble"]
            members = [m for m in ev["metrics"]["test"]["members"]]
            row = {"split": split, "target": target, "architecture": args.architecture,
                   "members": len(ckpts), "R2": float(test["R2"]), "MAE": float(test["MAE"]),
                   "n_test": int(test["n"]),
                   "member_R2": [float(m["R2"]) for m in members],
                   "coverage_test": ev["interval"]["conformal"].get("coverage_test"),
                   "train_wall_s": walls, "load_average": os.getloadavg()}
            others = []
            if args.learning_dir:
                others = _ladder_rows(args.learning_dir, split, target)
                r = _resnet_row(args.learning_dir, split, target)
                if r:
                    others.append(r)
            row["others"] = others
            row["intervals"] = _intervals(ev["predictions"], boost, split, target, args)
            results.append(row)
            print(f"\n{split} / {target}: {args.architecture} x{len(ckpts)} test R2 "
                  f"{row['R2']:.3f}, MAE {row['MAE']:.2f} GPa (members R2 "
                  f"{', '.join(f'{v:.3f}' for v in row['member_R2'])}; n {row['n_test']}); "
                  f"training {sum(walls):.0f} s ({', '.join(f'{w:.0f}' for w in walls)} s), "
                  f"load average {row['load_average'][0]:.1f}")
            for o in others:
                print(f"    {o['model']:>14s}: R2 {o['R2']:.3f}, MAE {o['MAE']:.2f} GPa")
            for name, iv in row["intervals"].items():
                print(f"    bootstrap 95 % {name:>22s}: "
                      + ", ".join(f"{k} {v[0]:.3f} ({v[1]:.3f}..{v[2]:.3f})" for k, v in iv.items()))
    if args.map_area:
        results.append(_map(args, out))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return results


def _map(args, out):
    """Dense map of ``--map-area`` by the first members, with its agreement to exact inference."""
    import torch
    from microprop import io as mio
    from microprop import learning

    calibrated, attrs = mio.open_calibrated(args.map_area, "MulF")
    ckpts = [out / args.splits[0] / args.targets[0] / f"m{m}" / "best.pt"
             for m in range(int(args.map_members))]
    dev = torch.device(args.device)
    models, meta = learning.load_ensemble(ckpts, dev)
    s = int(meta["crop_size_px"])
    step = max(1, round(args.map_step_um * 1000 / float(attrs["pixel_size_nm"])))
    grid, centres, timing = learning.timed_dense_predict_map(calibrated, models, s, step,
                                                             device=dev, desc="dense map")
    fn = learning.ensemble_mean_predictor(models, dev, 64)
    agree = learning.dense_agreement(calibrated, grid, centres, fn, s,
                                     n_windows=int(args.check_windows))
    row = {"map_area": str(args.map_area), "map_shape": list(calibrated.shape), "step_px": step,
           "checkpoints": [str(c) for c in ckpts], "dense": timing, "agreement": agree,
           "load_average": os.getloadavg()}
    print(f"\ndense map of {args.map_area} ({calibrated.shape[0]} x {calibrated.shape[1]} px) at "
          f"{step} px by {len(ckpts)} member(s): {timing['crops']} windows in "
          f"{timing['seconds']:.0f} s ({timing['crops_per_s']:.0f} windows/s); against exact "
          f"inference on {agree['n_windows']} windows R2 {agree['r2']:.7f}, largest difference "
          f"{agree['max_abs_diff']:.2g} GPa (exact {agree['exact_crops_per_s']:.0f} crops/s); "
          f"load average {row['load_average'][0]:.1f}")
    return row


if __name__ == "__main__":
    main()
