"""Bad-input cases: cli (run by test_bad_input.py; see bad_input.py for the row format).

Also the Python-API twins of the CLI rows (``TrainConfig``, ``train``, ``build_model``,
``load_trained``) and malformed ``torchrun`` environments.
"""
from __future__ import annotations

import contextlib
import os

from bad_input import CLIError, Case, Ctx, cli_case, overwrite_tensor_bytes, run_cli

T = ["train", "--data", "{data}", "--out", "{tmp}/run", "--epochs", "1", "--quiet"]
MLP = [*T, "--model", "mlp"]


@contextlib.contextmanager
def environment(**values: str):
    """``os.environ`` with ``values`` set inside the block (restored afterwards)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def torchrun(**env: str):
    """A CLI case body running ``train`` under the given (malformed) torchrun variables."""
    def call(ctx: Ctx) -> None:
        with environment(**env):
            run_cli([ctx.fmt(a) for a in MLP])
    return call


def a_finished_mlp_run(ctx: Ctx) -> None:
    run_cli([ctx.fmt(a) for a in MLP] + ["--threads", "1"])


def a_damaged_run(name: str):
    """Setup: a finished MLP run whose ``name`` (best.pt / last.pt) has bytes of one weight overwritten."""
    def setup(ctx: Ctx) -> None:
        a_finished_mlp_run(ctx)
        overwrite_tensor_bytes(ctx.tmp / "run" / name)
    return setup


def config(**kw):
    from neuralgraph.train import TrainConfig

    return TrainConfig(data="d", out="o", **kw)


def train_api(ctx: Ctx, **kw):
    from neuralgraph.train import TrainConfig, train

    return train(TrainConfig(data=str(ctx.data), out=str(ctx.tmp / "run"), model="mlp", epochs=1),
                 progress=False, verbose=False, **kw)


def build(name: str, **kw):
    import neuralgraph as ng
    from neuralgraph.train import build_model

    return build_model(name, 10, arch=ng.mlp_architecture([2, 8, 1], "sine", w0=30), **kw)


def load_trained(path):
    from neuralgraph.train import load_trained as load

    return load(path)


def load_trained_on(path, device):
    from neuralgraph.train import load_trained as load

    return load(path, device=device)


CASES: list[Case] = [
    cli_case("train: missing data directory", ["train", "--data", "{tmp}/nonexistent", "--out", "{tmp}/run"],
             "data directory not found"),
    cli_case("fit-inrs: mnist without --root", ["fit-inrs", "--source", "mnist", "--out", "{tmp}/x"], "root"),
    cli_case("train: neither --data nor --config", ["train", "--out", "{tmp}/run"], "--data is required"),
    cli_case("train: --config not found", ["train", "--config", "{tmp}/none.json"], "none.json not found"),
    cli_case("train: --config not a configuration", ["train", "--config", "{tmp}/bad.json"],
             "is not a training configuration (unknown entries ['nosuch'])",
             setup=lambda ctx: (ctx.tmp / "bad.json").write_text('{"nosuch": 1}')),
    cli_case("train: unknown model", ["train", "--data", "{data}", "--out", "{tmp}/run", "--model", "nosuch"],
             "invalid choice: 'nosuch'"),
    # --model-arg: read by the constructor's annotations, range-checked by the constructor
    cli_case("model-arg hidden=abc", [*T, "--model-arg", "hidden=abc"], "hidden='abc': expected an int"),
    cli_case("model-arg hidden=8.5", [*T, "--model-arg", "hidden=8.5"], "hidden='8.5': expected an int"),
    cli_case("model-arg hidden=-5", [*T, "--model-arg", "hidden=-5"], "hidden must be an integer >= 1"),
    cli_case("model-arg hidden=0", [*T, "--model-arg", "hidden=0"], "hidden must be an integer >= 1"),
    cli_case("model-arg mlp hidden=-5", [*MLP, "--model-arg", "hidden=-5"], "hidden widths must be ints >= 1"),
    cli_case("model-arg mlp hidden=64,x", [*MLP, "--model-arg", "hidden=64,x"], "expected a sequence of int"),
    cli_case("model-arg bool typo", [*T, "--model-arg", "use_probes=flase"], "use_probes='flase': expected a bool"),
    cli_case("model-arg unknown key", [*T, "--model-arg", "nosuch=1"], "no hyper-parameter 'nosuch'; accepted:"),
    cli_case("model-arg without =", [*T, "--model-arg", "hidden"], "expected KEY=VALUE"),
    cli_case("model-arg given twice", [*T, "--model-arg", "hidden=8", "--model-arg", "hidden=16"], "given twice"),
    cli_case("model-arg out_dim", [*T, "--model-arg", "out_dim=3"], "out_dim is set from the dataset"),
    cli_case("model-arg fixed by mlp-aug", [*T, "--model", "mlp-aug", "--model-arg", "permute_augment=false"],
             "fixes permute_augment"),
    cli_case("model-arg Literal choice", [*T, "--model", "dwsnet", "--model-arg", "reduce=median"],
             "one of 'mean', 'sum', 'max'"),
    cli_case("model-arg head=equivariant", [*T, "--model-arg", "head=equivariant"], "head is set by the task"),
    cli_case("model-arg dwsnet head=none", [*T, "--model", "dwsnet", "--model-arg", "head=none"],
             "head is set by the task (--task"),
    Case("TrainConfig head=None", lambda ctx: config(model_kwargs={"head": None}), ValueError,
         "head is set by the task"),
    cli_case("task unknown", [*T, "--task", "nosuch"], "invalid choice: 'nosuch'"),
    cli_case("task-arg unknown", [*T, "--task", "edit", "--task-arg", "radius=2"], "task 'edit' has no option"),
    cli_case("task-arg edit size even", [*T, "--task", "edit", "--task-arg", "size=4"],
             "size must be an odd integer"),
    cli_case("task-arg edit size not int", [*T, "--task", "edit", "--task-arg", "size=abc"], "size"),
    cli_case("label smoothing for edit", [*T, "--task", "edit", "--label-smoothing", "0.1"],
             "applies to task 'classify' only"),
    Case("TrainConfig unknown task", lambda ctx: config(task="nosuch"), ValueError, "unknown task 'nosuch'"),
    Case("regress with standardisation", lambda ctx: __import__("neuralgraph.tasks", fromlist=["Regress"]).Regress()
         .load_splits(ctx.tmp, normalize=True), ValueError, "train with --no-normalize"),
    Case("regress unknown loss", lambda ctx: config(task="regress", task_kwargs={"loss": "mae"}),
         ValueError, "unknown loss 'mae'; choose one of mse, rank"),
    Case("regress weight_dropout of 1", lambda ctx: config(task="regress", task_kwargs={"weight_dropout": 1.0}),
         ValueError, "need weight_noise >= 0 and 0 <= weight_dropout < 1, got 0.0 and 1.0"),
    Case("regress rank_scale not positive", lambda ctx: config(task="regress", task_kwargs={"rank_scale": 0.0}),
         ValueError, "rank_scale must be > 0"),
    Case("ranking loss of mismatched lengths", lambda ctx: __import__("neuralgraph.tasks.regress", fromlist=["x"])
         .pairwise_ranking_loss(__import__("torch").zeros(3), __import__("torch").zeros(4)), ValueError, "pred has 3 values but target 4"),
    Case("TrainConfig task_kwargs wrong type", lambda ctx: config(task="edit", task_kwargs={"size": "3"}),
         ValueError, "size"),
    cli_case("mlp-aug with the edit task", [*T, "--task", "edit", "--model", "mlp-aug"],
             "augment the data instead (--augment permute=true)"),
    cli_case("model-arg max_in below the data", [*T, "--model", "dwsnet", "--model-arg", "max_in=1"],
             "max_in=1 is smaller than the dataset needs (2"),
    cli_case("model-arg dropout=1", [*T, "--model", "dwsnet", "--model-arg", "dropout=1"], "dropout"),
    cli_case("model-arg attn_heads do not divide hidden", [*T, "--model", "ngt", "--model-arg", "attn_heads=3"],
             "not divisible by attn_heads=3"),
    # --augment: read by the Augment dataclass fields
    cli_case("augment unknown key", [*T, "--augment", "nosuch=1"], "--augment has no option 'nosuch'; accepted:"),
    cli_case("augment bool typo", [*T, "--augment", "permute=maybe"], "permute='maybe': expected a bool"),
    cli_case("augment inf noise", [*T, "--augment", "noise_std=inf"], "noise_std='inf': expected a finite float"),
    cli_case("augment dropout=1.5", [*T, "--augment", "dropout=1.5"], "0 <= dropout < 1"),
    # devices: what exists on this machine
    cli_case("device foo", [*T, "--device", "foo"], "device 'foo' is not supported; use cpu, cuda, cuda:N or auto"),
    cli_case("device mps", [*T, "--device", "mps"], "device 'mps' is not supported"),
    cli_case("device meta", [*T, "--device", "meta"], "device 'meta' is not supported"),
    cli_case("device cuda:99", [*T, "--device", "cuda:99"], "device 'cuda:99' requested but"),
    cli_case("quickstart device foo", ["quickstart", "--out", "{tmp}/qs", "--device", "foo"], "device 'foo'"),
    # numbers
    cli_case("warmup-epochs inf", [*T, "--warmup-epochs", "inf"], "argument --warmup-epochs: must be a finite"),
    cli_case("clip-grad-norm nan", [*T, "--clip-grad-norm", "nan"], "argument --clip-grad-norm: must be a finite"),
    cli_case("lr nan", [*T, "--lr", "nan"], "argument --lr: must be a finite number > 0"),
    cli_case("lr inf", [*T, "--lr", "inf"], "argument --lr: must be a finite number > 0"),
    cli_case("weight-decay -1", [*T, "--weight-decay", "-1"], "argument --weight-decay: must be >= 0"),
    cli_case("label-smoothing 1", [*T, "--label-smoothing", "1"], "label_smoothing=1.0 (must be in [0, 1))"),
    cli_case("eval-batch-size 0", [*T, "--eval-batch-size", "0"], "argument --eval-batch-size"),
    cli_case("threads 0", [*T, "--threads", "0"], "argument --threads"),
    cli_case("epochs 0", [*T[:-3], "--epochs", "0"], "argument --epochs"),
    cli_case("seed beyond 64 bits", [*T, "--seed", str(2 ** 70)], "seed=1180591620717411303424 (must be in"),
    cli_case("stop-after-epoch beyond epochs", [*T, "--stop-after-epoch", "5"], "stop_after_epoch=5 is beyond epochs=1"),
    # run directories
    cli_case("out is a file", ["train", "--data", "{data}", "--out", "{tmp}/file", "--quiet"], "is a file",
             setup=lambda ctx: (ctx.tmp / "file").write_text("x")),
    cli_case("existing run without --resume", MLP, "--resume", setup=a_finished_mlp_run),
    cli_case("resume a run of another model", [*T, "--model", "mlp-aug", "--resume"],
             "model: checkpoint 'mlp' vs now 'mlp-aug'", setup=a_finished_mlp_run),
    cli_case("resume with another --epochs", [*T[:-3], "--model", "mlp", "--epochs", "2", "--quiet", "--resume"],
             "epochs: checkpoint 1 vs now 2", setup=a_finished_mlp_run),
    cli_case("resume a garbage last.pt", [*MLP, "--resume"], "not a readable checkpoint",
             setup=lambda ctx: ((ctx.tmp / "run").mkdir(), (ctx.tmp / "run" / "last.pt").write_bytes(b"junk"))),
    # damaged checkpoints: bytes of one weight overwritten (torch.load checks no CRC)
    cli_case("predict: best.pt with a weight overwritten", ["predict", "--run", "{tmp}/run", "--data", "{data}"],
             "best.pt: checksum mismatch in model/", setup=a_damaged_run("best.pt")),
    cli_case("evaluate: best.pt with a weight overwritten", ["evaluate", "--run", "{tmp}/run", "--data", "{data}"],
             "best.pt: checksum mismatch in model/", setup=a_damaged_run("best.pt")),
    cli_case("extend: last.pt with a weight overwritten", ["extend", "--run", "{tmp}/run", "--epochs", "2",
                                                          "--quiet"], "last.pt: checksum mismatch in model/",
             setup=a_damaged_run("last.pt")),
    cli_case("resume: last.pt with a weight overwritten", [*MLP, "--resume"], "last.pt: checksum mismatch in model/",
             setup=a_damaged_run("last.pt")),
    # torchrun environment
    Case("torchrun WORLD_SIZE=abc", torchrun(WORLD_SIZE="abc"), CLIError, "WORLD_SIZE='abc' is not an integer"),
    Case("torchrun WORLD_SIZE=-1", torchrun(WORLD_SIZE="-1"), CLIError, "WORLD_SIZE=-1 must be >= 1"),
    Case("torchrun without MASTER_ADDR", torchrun(WORLD_SIZE="2", RANK="0"), CLIError, "launch with torchrun"),
    Case("torchrun RANK outside", torchrun(WORLD_SIZE="2", RANK="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500"),
         CLIError, "RANK=2 is outside 0..1"),
    Case("torchrun MASTER_PORT=http", torchrun(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="http"),
         CLIError, "MASTER_PORT='http' is not an integer"),
    Case("torchrun MASTER_PORT=0", torchrun(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="0"),
         CLIError, "MASTER_PORT=0 is not a TCP port"),
    Case("torchrun LOCAL_RANK=-1", torchrun(WORLD_SIZE="2", RANK="0", LOCAL_RANK="-1", MASTER_ADDR="127.0.0.1",
                                            MASTER_PORT="29500"), CLIError, "LOCAL_RANK=-1 must be >= 0"),
    # the Python API twins
    Case("TrainConfig use_probes='false'", lambda ctx: config(model_kwargs={"use_probes": "false"}), ValueError,
         "use_probes='false': expected a bool (True or False), got str"),
    Case("TrainConfig augment permute='false'", lambda ctx: config(augment={"permute": "false"}), ValueError,
         "permute='false': expected a bool"),
    Case("TrainConfig augment unknown", lambda ctx: config(augment={"nosuch": 1}), ValueError,
         "augment has no option 'nosuch'"),
    Case("TrainConfig hidden=8.5", lambda ctx: config(model_kwargs={"hidden": 8.5}), ValueError,
         "hidden=8.5: expected an int, got float"),
    Case("TrainConfig hidden unknown", lambda ctx: config(model_kwargs={"nosuch": 1}), ValueError,
         "no hyper-parameter 'nosuch'"),
    Case("TrainConfig device mps", lambda ctx: config(device="mps"), ValueError, "device 'mps' is not supported"),
    Case("TrainConfig warmup inf", lambda ctx: config(warmup_epochs=float("inf")), ValueError, "warmup_epochs=inf"),
    Case("TrainConfig clip nan", lambda ctx: config(clip_grad_norm=float("nan")), ValueError, "clip_grad_norm=nan"),
    Case("TrainConfig epochs=2.5", lambda ctx: config(epochs=2.5), ValueError, "epochs=2.5: expected an int"),
    Case("TrainConfig lr=0", lambda ctx: config(lr=0.0), ValueError, "lr=0.0 (must be > 0)"),
    Case("build_model hidden=0", lambda ctx: build("nggnn", hidden=0), ValueError, "hidden must be an integer >= 1"),
    Case("build_model mlp hidden=(0,)", lambda ctx: build("mlp", hidden=(0,)), ValueError, "hidden widths"),
    Case("build_model mlp hidden=64", lambda ctx: build("mlp", hidden=64), ValueError, "expected a sequence of int"),
    Case("train threads=0", lambda ctx: train_api(ctx, threads=0), ValueError, "threads=0: expected an int >= 1"),
    Case("train stop_after_epoch=0", lambda ctx: train_api(ctx, stop_after_epoch=0), ValueError, "stop_after_epoch=0"),
    Case("load_trained on a dataset file", lambda ctx: load_trained(ctx.data / "train.pt"), ValueError,
         "not a neuralgraph training checkpoint"),
    Case("load_trained device meta", lambda ctx: load_trained_on(ctx.data / "train.pt", "meta"), ValueError,
         "device 'meta' is not supported"),
    Case("load_trained: best.pt with a weight overwritten", lambda ctx: (a_damaged_run("best.pt")(ctx),
                                                                          load_trained(ctx.tmp / "run")),
         ValueError, "best.pt: checksum mismatch in model/"),
    Case("load_trained on a directory without best.pt", lambda ctx: load_trained(ctx.tmp), FileNotFoundError,
         "checkpoint not found"),
]
