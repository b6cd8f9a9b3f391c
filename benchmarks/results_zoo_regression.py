"""Reproduce the README's accuracy-prediction tables (Kendall's tau on held-out zoo networks; CPU minutes).

    python benchmarks/results_zoo_regression.py --out runs/zoo_full --root-mnist ../shared/datasets/mnist \
        --root-fashion ../shared/datasets/fashion_mnist --zoo mnist_small_cnn fashion_small_cnn \
        --num-networks 3000 --zoo-epochs 4 --checkpoints 2 3 4 --n-train 10000 --n-test 10000 \
        --epochs 10 --train-epochs 2 3 --val 0.1 --test 0.3 --models nggnn ngt --threads 1
    # add --weight-noise 0.1 --weight-dropout 0.01 --suffix _aug for the neural-graphs augmentation,
    # --seeds 0 1 2 for three training seeds and their ensemble (one process per zoo side by side),
    # --split-seed 1 --suffix _aug_split1 for another split by network,
    # --loss rank --suffix _rank for the ranking loss; the README's first zoos were
    # --zoo-epochs 3 --n-train 2000 --n-test 1000 --train-epochs 1 2 (runs/zoo3k)

Generates (or reuses) the zoos with ``neuralgraph.zoo.generate_zoo`` (MNIST and
Fashion-MNIST Small CNN Zoos, a Wild-Park-style MNIST zoo), then on the same split by
network fits StatNN (per-layer weight statistics, then gradient-boosted trees, and
then the NFN / neural-graphs papers' two-hidden-layer MLP) and trains
NG-GNN, NG-T, DWSNet and the flat MLP with ``--task regress`` (target: test accuracy
at the last checkpoint). Prints a markdown table of test Kendall's tau and of each
model's tau minus each StatNN's with a paired-bootstrap 95 % interval
(:func:`neuralgraph.zoo.tau_difference`) on the same test networks; every run
directory keeps predictions.png and its metrics, and ``results_<zoo><suffix>.json``
the rows of each zoo. With several ``--seeds`` each model is trained once per seed, and a row
``<model> x<k>`` scores the ensemble of those runs (:func:`ensemble`).

The README's 10,000-network zoo on this 2-core CPU. The zoo was made first, on 2 threads in 71 min
(``generate_zoo`` with these settings, or this command with ``--threads 2``); then two processes
side by side reuse it and train on one thread each, 27 min per run. The MLP StatNN is fitted in the first
process only; the second one's ``--out`` holds a link to the same zoo file::

    python benchmarks/results_zoo_regression.py --out runs/zoo10k/a --root-mnist ../shared/datasets/mnist \
        --zoo mnist_small_cnn --num-networks 10000 --zoo-epochs 4 --checkpoints 2 3 4 --n-train 10000 \
        --n-test 10000 --chunk-size 500 --train-epochs 2 3 --val 0.1 --test 0.3 --weight-noise 0.1 \
        --weight-dropout 0.01 --suffix _aug --epochs 10 --threads 1 --models nggnn --statnn gbt mlp
    # the same with --out runs/zoo10k/b --models ngt --statnn gbt; then --seeds 1, then --seeds 0 1
    # (the finished runs are reused) for the ensembles

On one GPU, a 10,000-network zoo (made in 70-73 s on an H100; ``benchmarks/gpu_zoo.sh`` runs this
with time limits)::

    python benchmarks/results_zoo_regression.py --device cuda --threads 16 --out runs/zoo_gpu \
        --root-mnist data/mnist --zoo mnist_small_cnn --num-networks 10000 --zoo-epochs 4 --checkpoints 2 3 4 \
        --n-train 10000 --n-test 10000 --chunk-size 5000 --train-epochs 2 3 --val 0.1 --test 0.3 \
        --weight-noise 0.1 --weight-dropout 0.01 --suffix _aug --epochs 10 --batch-size 64 --lr 3e-3 --models nggnn

``--statnn gbt`` fits only the trees: the MLP StatNN takes minutes on 10,000 networks. Batches of 64
need the larger learning rate (on the 3,000-network zoo, NG-GNN's tau is 0.848 at lr 1e-3 and 0.866 at
3e-3, against 0.869 for batch 16 at 1e-3; the README has the table).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuralgraph.io import atomic_write_text
from neuralgraph.train import TrainConfig, train
from neuralgraph.zoo import ZooDataset, evaluate_statnn, generate_zoo, kendall_tau, tau_difference

#: Per-model settings (small models for a 2-core CPU; probes sized to the 14x14 zoo images).
SETTINGS = {
    "nggnn": {"lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 3, "probe_image_size": 14}},
    "ngt": {"lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 3, "probe_image_size": 14}},
    "dwsnet": {"lr": 1e-3, "model_kwargs": {"hidden": 16, "num_layers": 3}},
    "mlp": {"lr": 1e-3, "model_kwargs": {"hidden": (256, 256)}},
}
REGRESS_DEFAULTS = {"val": 0.15, "test": 0.15, "split_seed": 0, "loss": "mse", "weight_noise": 0.0,
                    "weight_dropout": 0.0}
#: StatNN regressor -> suffix of its row ("statnn<suffix>") and of the margins over it: trees (Unterthiner
#: et al.) and the papers' MLP
STATNN_KEYS = {"gbt": "", "mlp": "_mlp"}
FIXED_ONLY = {"mlp"}          # the flat MLP needs one parameter layout
TRAINED = 0.2                 # test accuracy of the networks that learnt (the diagnostic margin; chance ~0.1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root-mnist", type=Path, required=True)
    p.add_argument("--root-fashion", type=Path)
    p.add_argument("--zoo", nargs="+", default=["mnist_small_cnn", "fashion_small_cnn", "mnist_wild_park"])
    p.add_argument("--num-networks", type=int, default=256)
    p.add_argument("--zoo-epochs", type=int, default=3)
    p.add_argument("--checkpoints", type=int, nargs="*", default=None,
                   help="zoo epochs to record (default: every epoch from 0)")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--models", nargs="+", default=list(SETTINGS))
    p.add_argument("--n-test", type=int, default=1000, help="test images each zoo network is scored on")
    p.add_argument("--batch-size", type=int, default=16, help="networks per training batch of the processors")
    p.add_argument("--chunk-size", type=int, default=128, help="zoo networks trained together")
    p.add_argument("--device", default="cpu", help="zoo training and processor training device (cpu, cuda)")
    p.add_argument("--train-epochs", type=int, nargs="*", default=None,
                   help="also train on these checkpoints of the training networks (regress train_epochs)")
    p.add_argument("--hidden", type=int, default=None, help="NG models' hidden width (default: SETTINGS)")
    p.add_argument("--lr", type=float, default=None, help="the processors' learning rate (default: SETTINGS)")
    p.add_argument("--suffix", default="", help="appended to the run directories (several settings side by side)")
    p.add_argument("--val", type=float, default=0.15, help="fraction of the networks in the validation split")
    p.add_argument("--test", type=float, default=0.15, help="fraction of the networks in the test split")
    p.add_argument("--loss", default="mse", choices=["mse", "rank"], help="the processors' regress loss")
    p.add_argument("--weight-noise", type=float, default=0.0,
                   help="regress weight_noise: training noise relative to each layer's std (neural-graphs: 0.1)")
    p.add_argument("--weight-dropout", type=float, default=0.0, help="regress weight_dropout (neural-graphs: 0.01)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the split by network (StatNN and the processors share it; give the runs a --suffix)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds of the processors (the split is --split-seed's); seed s > 0 runs in "
                        "<run>_s<s>, and with several seeds each model also gets a row for their ensemble")
    p.add_argument("--statnn", nargs="+", default=list(STATNN_KEYS), choices=list(STATNN_KEYS),
                   help="StatNN regressors to fit (the MLP takes ~50 s on 3,000 networks and 2 CPU threads)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    specs = {"mnist_small_cnn": ("small_cnn", "mnist", args.root_mnist),
             "fashion_small_cnn": ("small_cnn", "fashion_mnist", args.root_fashion),
             "mnist_wild_park": ("wild_park", "mnist", args.root_mnist)}
    rows = []
    seed_tag = "" if args.seeds == [0] else "_s" + "-".join(map(str, args.seeds))

    def save(name: str) -> None:
        """``results_<zoo><suffix>[_s<seeds>].json``: one file per zoo, so processes for two zoos never share one."""
        atomic_write_text(json.dumps([r for r in rows if r["zoo"] == name], indent=2),
                          args.out / f"results_{name}{args.suffix}{seed_tag}.json")

    for name in args.zoo:
        family, dataset, root = specs[name]
        if root is None:
            print(f"skipping {name}: no root given", flush=True)
            continue
        t0 = time.perf_counter()
        path = generate_zoo(args.out / f"{name}.pt", family=family, dataset=dataset, root=root,
                            num_networks=args.num_networks, epochs=args.zoo_epochs, checkpoints=args.checkpoints,
                            n_train=args.n_train,
                            n_test=args.n_test, n_train_eval=500, chunk_size=args.chunk_size, device=args.device,
                            progress=False,
                            on_chunk=lambda k, n: print(f"  chunk {k + 1}/{n} at {time.perf_counter() - t0:.0f}s",
                                                        flush=True))
        zoo = ZooDataset(path)
        acc = zoo.targets()
        note = (f"{name}: {len(zoo)} networks ({int(zoo.valid.sum())} valid), test accuracy mean {acc.mean():.1%} "
                f"(std {acc.std():.1%}), made in {time.perf_counter() - t0:.0f}s")
        print(note, flush=True)
        statnn_pred = {}                  # regressor -> {network id: prediction}
        for regressor in args.statnn:
            key = STATNN_KEYS[regressor]
            statnn = evaluate_statnn(zoo, zoo.split(args.val, args.test, args.split_seed),
                                     train_epochs=args.train_epochs or (), regressor=regressor)
            statnn_pred[regressor] = dict(zip(statnn["ids"].tolist(), statnn["pred"].tolist()))
            rows.append({"zoo": name, "model": f"statnn{key}", "tau": statnn["tau"], "train_time_s": None,
                         "note": note, "test_networks": len(statnn["ids"])})
            print(json.dumps(rows[-1]), flush=True)
        for model in args.models:
            if model in FIXED_ONLY and family != "small_cnn":
                continue
            settings = {**SETTINGS[model], "model_kwargs": dict(SETTINGS[model]["model_kwargs"])}
            if args.hidden and model in ("nggnn", "ngt"):
                settings["model_kwargs"]["hidden"] = args.hidden
            if args.lr:
                settings["lr"] = args.lr
            task_kwargs = {k: getattr(args, k) for k in REGRESS_DEFAULTS
                           if getattr(args, k) != REGRESS_DEFAULTS[k]}   # only what differs: older runs resume
            if args.train_epochs:
                task_kwargs["train_epochs"] = tuple(args.train_epochs)
            seed_preds = []
            for seed in args.seeds:
                run = args.out / f"{name}_{model}{args.suffix}{f'_s{seed}' if seed else ''}"
                cfg = TrainConfig(data=str(path), out=str(run), task="regress", model=model,
                                  task_kwargs=task_kwargs, epochs=args.epochs, batch_size=args.batch_size,
                                  normalize=False, device=args.device, seed=seed,
                                  augment={"permute": True} if model not in FIXED_ONLY else {}, **settings)
                res = train(cfg, resume=True, progress=False)
                ids, pred, target = test_predictions(res.classifier, cfg)
                seed_preds.append(dict(zip(ids, pred)))
                rows.append({"zoo": name, "model": model, "seed": seed, "tau": res.test_metrics["tau"],
                             "loss": res.test_metrics["loss"], "loss_name": args.loss, "params": res.num_params,
                             "train_time_s": res.train_time_s, "note": note, "test_networks": len(ids),
                             **margins(pred, ids, target, statnn_pred)})
                print(json.dumps(rows[-1]), flush=True)
            if len(args.seeds) > 1:
                pred = ensemble([[p[i] for i in ids] for p in seed_preds])
                rows.append({"zoo": name, "model": f"{model} x{len(args.seeds)}", "seed": list(args.seeds),
                             "tau": kendall_tau(pred, target), "train_time_s": None, "note": note,
                             "test_networks": len(ids), **margins(pred, ids, target, statnn_pred)})
                print(json.dumps(rows[-1]), flush=True)
            save(name)                    # partial results survive
    print("\n| zoo | model | test Kendall's tau | minus StatNN (trees) [95 % CI] | minus StatNN (MLP) [95 % CI] "
          "| train time |\n|---|---|---|---|---|---|")
    for r in rows:
        t = "-" if r["train_time_s"] is None else f"{r['train_time_s'] / 60:.1f} min"
        gaps = ["-" if f"ci95{key}" not in r else
                f"{r[f'tau_minus_statnn{key}']:+.3f} [{r[f'ci95{key}'][0]:+.3f}, {r[f'ci95{key}'][1]:+.3f}]"
                for key in STATNN_KEYS.values()]
        seed = r.get("seed")
        label = f"{r['model']} seed {seed}" if isinstance(seed, int) and seed else r["model"]
        print(f"| {r['zoo']} | {label} | {r['tau']:.3f} | {gaps[0]} | {gaps[1]} | {t} |")


def margins(pred: list[float], ids: list[int], target: list[float], statnn_pred: dict) -> dict:
    """Tau of ``pred`` minus each fitted StatNN's on the same test networks, and the margin over the
    trees on the networks that learnt."""
    out = {}
    for regressor in statnn_pred:
        key = STATNN_KEYS[regressor]
        gap = tau_difference(pred, [statnn_pred[regressor][i] for i in ids], target)
        out.update({f"tau_minus_statnn{key}": gap["diff"], f"ci95{key}": [gap["low"], gap["high"]]})
    if "gbt" not in statnn_pred:
        return out
    trained = [k for k, t in enumerate(target) if t >= TRAINED]   # a diagnostic: the networks that learnt
    if len(trained) < 10:                      # too few for a tau (a tiny or barely trained zoo)
        return {**out, "trained_networks": len(trained)}
    gap = tau_difference([pred[k] for k in trained], [statnn_pred["gbt"][ids[k]] for k in trained],
                         [target[k] for k in trained])
    return {**out, "trained_networks": len(trained), "trained_tau_minus_statnn": gap["diff"],
            "trained_ci95": [gap["low"], gap["high"]]}


def ensemble(preds: list[list[float]]) -> list[float]:
    """The mean over runs of each run's test predictions standardised over the test networks.

    Standardising is an increasing map per run, so it keeps each run's ranking; it puts runs
    trained with the ranking loss, whose scores have no common scale, on one footing. With
    MSE runs, whose predictions are all accuracies, it is close to the plain mean.
    """
    p = torch.tensor(preds, dtype=torch.float64)
    return ((p - p.mean(1, keepdim=True)) / p.std(1, keepdim=True).clamp_min(1e-12)).mean(0).tolist()


def test_predictions(model: torch.nn.Module, cfg: TrainConfig) -> tuple[list[int], list[float], list[float]]:
    """The selected model's predictions on the run's test networks: ``(zoo ids, predictions, targets)``."""
    from neuralgraph.tasks import make_task

    view = make_task("regress", **cfg.task_kwargs).load_splits(cfg.data, normalize=False)["test"]
    return tuple(t.tolist() for t in view.predict(model))


if __name__ == "__main__":
    main()
