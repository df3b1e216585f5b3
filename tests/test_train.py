"""Training loop: D4 augmentation, learning a known relation, checkpoint/resume."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from microprop.data import read_crops
from microprop.errors import InputError
from microprop.learning import (
    METRIC_COLUMNS,
    TrainingStopped,
    d4_apply,
    d4_index_maps,
    downsample_images,
    load_model,
    member_seed,
    predict,
    quantize_uint8,
    train,
)
from microprop.virtual import write_synthetic_dataset
from script_runner import REPO, run_script

torch.set_num_threads(2)
TINY = dict(stem_channels=16, stage_channels=(16, 32, 32), hidden=64)
KILL_TOL = 1e-6  # relative tolerance of the resume test (on CPU it is bitwise in practice)


@pytest.fixture(scope="module")
def data32(tmp_path_factory):
    """200 known-relation crops of 32 px (E = 40 + 10 z + N(0, 1))."""
    path = tmp_path_factory.mktemp("syn") / "dataset.h5"
    table = write_synthetic_dataset(path, n=200, size=32, seed=0)
    return path, table


@pytest.fixture(scope="module")
def data16(tmp_path_factory):
    """80 known-relation crops of 16 px (for the fast resume tests)."""
    path = tmp_path_factory.mktemp("syn16") / "dataset.h5"
    write_synthetic_dataset(path, n=80, size=16, seed=1)
    return path


# ----------------------------------------------------------------------------- D4

def test_d4_gives_the_8_distinct_symmetries(rng):
    x = torch.as_tensor(rng.random((1, 1, 7, 7)), dtype=torch.float32)
    maps = d4_index_maps(7)
    out = torch.cat([d4_apply(x, torch.tensor([g]), maps) for g in range(8)])
    ref = [torch.rot90(x[0, 0], k, dims=(0, 1)) for k in range(4)]
    ref += [torch.flip(r, dims=(1,)) for r in ref]
    for g in range(8):
        assert torch.equal(out[g, 0], ref[g])
        # a permutation: the multiset of pixel values is kept
        assert torch.equal(torch.sort(out[g].flatten()).values, torch.sort(x.flatten()).values)
    flat = out.reshape(8, -1)
    assert len({tuple(r.tolist()) for r in flat}) == 8
    # the set is the group: closed under composition with any element
    for g in range(8):
        again = d4_apply(out, torch.full((8,), g), maps).reshape(8, -1)
        assert {tuple(r.tolist()) for r in again} == {tuple(r.tolist()) for r in flat}


def test_d4_per_sample_choice_is_vectorised_and_exact(rng):
    x = torch.as_tensor(rng.random((16, 1, 9, 9)), dtype=torch.float32)
    choice = torch.as_tensor(rng.integers(0, 8, 16))
    out = d4_apply(x, choice, d4_index_maps(9))
    for i, g in enumerate(choice.tolist()):
        r = torch.rot90(x[i, 0], g % 4, dims=(0, 1))
        assert torch.equal(out[i, 0], torch.flip(r, dims=(1,)) if g >= 4 else r)


def test_downsample_is_area_average(rng):
    x = rng.random((3, 32, 32)).astype(np.float32)
    out = downsample_images(x, 16).numpy()
    ref = x.reshape(3, 16, 2, 16, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(out[:, 0], ref, rtol=1e-6)
    assert downsample_images(x, None).shape == (3, 1, 32, 32)
    # non-integer factor (250 -> 64 in the demo): every output is a local mean
    y = downsample_images(rng.random((1, 50, 50)), 16)
    assert y.shape == (1, 1, 16, 16) and 0 < float(y.min()) and float(y.max()) < 1


def test_member_seeds_differ():
    assert member_seed(0, 0) == member_seed(0, 0)
    assert len({member_seed(s, m) for s in range(3) for m in range(5)}) == 15


# ----------------------------------------------------------------------------- learning

def test_learns_known_relation(data32, tmp_path):
    path, table = data32
    out = tmp_path / "run"
    summary = train(path, "E_GPa", out, epochs=12, batch_size=16, lr=1e-3, seed=0,
                    arch_kwargs=TINY, log_every=0)
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert metrics["epoch"].tolist() == list(range(1, 13))
    assert summary["best_val_loss"] == metrics["val_loss"].min()
    assert summary["best_epoch"] == int(metrics.loc[metrics["val_loss"].idxmin(), "epoch"])

    model, meta = load_model(out / "best.pt", "cpu")
    assert meta["target"] == "E_GPa" and meta["epoch"] == summary["best_epoch"]
    images, y, index = read_crops(path, "E_GPa", "random", "test")
    pred = predict(model, meta, images, "cpu")
    r2 = 1 - np.mean((pred - y) ** 2) / np.var(y)
    best_r2 = 1 - 1.0 / np.var(y)  # the relation's noise is N(0, 1 GPa)
    print(f"test R2 {r2:.3f} (noise limit {best_r2:.3f}), val loss {summary['best_val_loss']:.3f}")
    assert r2 > 0.5
    # the learned map follows the known feature z, not the absolute grey level
    z = table["z"].to_numpy()[index]
    assert np.corrcoef(pred, z)[0, 1] > 0.8


@pytest.mark.parametrize("mode", ["bf16", "compile", "uint8"])
def test_gpu_code_paths_learn_on_cpu(mode, data16, tmp_path):
    """The bf16-autocast, torch.compile and uint8-resident paths (the GPU
    defaults) run and learn.

    No GPU is lent to CI, so both are exercised on the CPU: bf16 autocast via
    ``cpu_bf16`` and ``torch.compile`` (inductor, needs a C++ compiler;
    about 80 s cold on 2 cores). Untrained, the standardised validation MSE is
    ~1; 15 epochs on the known relation bring float32 to ~0.1. The kept
    checkpoint loads into an eager float32 model.
    """
    if mode == "compile" and shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler (none on PATH)")
    kwargs = {"bf16": dict(cpu_bf16=True), "compile": dict(compile=True),
              "uint8": dict(resident_uint8=True)}[mode]
    out = tmp_path / mode
    summary = train(data16, "E_GPa", out, epochs=15, batch_size=16, lr=1e-3, seed=0,
                    arch_kwargs=TINY, log_every=0, device="cpu", **kwargs)
    metrics = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()
    print(f"{mode}: best val loss {summary['best_val_loss']:.3f} at epoch {summary['best_epoch']}")
    assert summary["best_val_loss"] < 0.5
    assert metrics["train_loss"].iloc[-1] < 0.5 * metrics["train_loss"].iloc[0]
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])  # eager keys
    assert ckpt["meta"]["config"]["autocast_bf16"] == (mode == "bf16")
    assert ckpt["meta"]["config"]["resident_uint8"] == (mode == "uint8")
    model, meta = load_model(out / "best.pt", "cpu")
    images, y, _ = read_crops(data16, "E_GPa", "random", "test")
    pred = predict(model, meta, images, "cpu")
    assert 1 - np.mean((pred - y) ** 2) / np.var(y) > 0.3


def test_uint8_quantisation_error_is_half_a_step(rng):
    x = torch.as_tensor(0.05 + 0.3 * rng.random((50, 1, 16, 16)), dtype=torch.float32)
    q, lo, step = quantize_uint8(x)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert int(q.min()) == 0 and int(q.max()) == 255 and lo == pytest.approx(float(x.min()))
    err = (q.float() * step + lo - x).abs().max().item()
    assert err <= step / 2 + 1e-6 and step == pytest.approx(0.3 / 255, rel=0.01)
    # a shared range (train and val) clips what falls outside it
    q2, _, _ = quantize_uint8(x + 1.0, lo, lo + 255 * step)
    assert int(q2.min()) == 255


def test_bf16_inference_is_close_to_float32(data16, tmp_path):
    """``predict(bf16=True)`` (the CUDA default) stays within 5 % of the target's std."""
    out = tmp_path / "run"
    train(data16, "E_GPa", out, epochs=3, batch_size=16, lr=1e-3, arch_kwargs=TINY,
          log_every=0, device="cpu")
    model, meta = load_model(out / "best.pt", "cpu")
    images, _, _ = read_crops(data16, "E_GPa", "random", "test")
    p32 = predict(model, meta, images, "cpu")
    p16 = predict(model, meta, images, "cpu", bf16=True)
    rel = np.abs(p16 - p32) / meta["target_std"]
    print(f"bf16 - float32: max {rel.max():.4f}, mean {rel.mean():.4f} target std")
    assert 0 < rel.max() < 0.05  # it ran in bf16 (not identical), and closely


def test_checkpoint_contract_and_mc_dropout(data16, tmp_path):
    out = tmp_path / "run"
    train(data16, "H_GPa", out, epochs=1, batch_size=16, lr=1e-3, arch_kwargs=TINY,
          input_px=16, log_every=0)
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    for key in ("target", "target_mean", "target_std", "input_px", "crop_size_px", "arch",
                "arch_kwargs", "epoch", "val_loss", "dataset", "split", "seed", "member"):
        assert key in best["meta"], key
    for key in ("model", "meta", "optimizer", "scheduler", "rng", "best_val_loss", "epoch"):
        assert key in last, key
    _, y, _ = read_crops(data16, "H_GPa", "random", "train")
    assert best["meta"]["target_mean"] == pytest.approx(y.mean())
    assert best["meta"]["target_std"] == pytest.approx(y.std())
    assert best["meta"]["input_px"] is None  # 16 == crop size: no downsampling

    model, meta = load_model(out / "best.pt", "cpu")
    images, _, _ = read_crops(data16, "H_GPa", "random", "test")
    p1 = predict(model, meta, images, "cpu")
    assert np.array_equal(p1, predict(model, meta, images, "cpu"))
    torch.manual_seed(0)
    m1 = predict(model, meta, images, "cpu", mc_dropout=True)
    m2 = predict(model, meta, images, "cpu", mc_dropout=True)
    assert not np.allclose(m1, m2)
    assert not model.training and np.array_equal(p1, predict(model, meta, images, "cpu"))
    with pytest.raises(InputError, match="expected crops"):
        predict(model, meta, images[:, :8, :8], "cpu")


def test_kill_and_resume_reproduces_uninterrupted_run(data16, tmp_path):
    kw = dict(epochs=3, batch_size=16, lr=1e-3, seed=3, member=1, arch_kwargs=TINY,
              augment=True, log_every=0)
    a = train(data16, "E_GPa", tmp_path / "a", **kw)  # 56 train crops: 4 steps per epoch
    with pytest.raises(TrainingStopped):
        train(data16, "E_GPa", tmp_path / "b", stop_after_steps=6, **kw)  # killed in epoch 2
    last = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert last["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "b" / "metrics.csv")) == 1
    b = train(data16, "E_GPa", tmp_path / "b", **kw)
    assert b["resumed_from"] == 1 and b["epochs_run"] == 2
    assert b["best_epoch"] == a["best_epoch"]
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=KILL_TOL, abs=0)
    ma, mb = (pd.read_csv(tmp_path / r / "metrics.csv") for r in ("a", "b"))
    assert mb["epoch"].tolist() == [1, 2, 3]
    for col in ("train_loss", "val_loss", "val_mae_GPa", "lr"):
        np.testing.assert_allclose(mb[col], ma[col], rtol=KILL_TOL, atol=0)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    bitwise = all(torch.equal(wa[k], wb[k]) for k in wa)
    print(f"resumed run bitwise identical: {bitwise}")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=KILL_TOL, atol=1e-9)

    # a finished run called again runs nothing and reports the same best
    again = train(data16, "E_GPa", tmp_path / "b", **kw)
    assert again["epochs_run"] == 0 and again["best_val_loss"] == b["best_val_loss"]
    # a changed configuration refuses to resume
    with pytest.raises(InputError, match="lr"):
        train(data16, "E_GPa", tmp_path / "b", **{**kw, "lr": 1e-4})
    with pytest.raises(InputError, match="member"):
        train(data16, "E_GPa", tmp_path / "b", **{**kw, "member": 2})


KILL_CHILD = """
import json, os, signal, sys
import torch
torch.set_num_threads(2)
from microprop.learning import train
steps, orig, kill_at = [0], torch.optim.Adam.step, int(sys.argv[3])
def step(self, *args, **kwargs):
    out = orig(self, *args, **kwargs)
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no finally: a real kill
    return out
torch.optim.Adam.step = step
s = train(sys.argv[1], "E_GPa", sys.argv[2], **eval(sys.argv[4]))
print(json.dumps({k: s[k] for k in ("best_val_loss", "best_epoch", "resumed_from", "epochs_run")}))
"""


def _train_child(data, out_dir, kill_at, kw):
    """Train in a fresh process (2 threads), SIGKILLed after ``kill_at`` steps (0: never)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", KILL_CHILD, str(data), str(out_dir), str(kill_at), repr(kw)],
                          capture_output=True, text=True, timeout=1800,
                          env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"})
    if kill_at:
        assert proc.returncode == -9, proc.stderr[-3000:]
        return None
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sigkill_mid_epoch_then_resume_reaches_the_same_best(data16, tmp_path):
    """A training process killed by SIGKILL in its second epoch (step 6 of 4 per
    epoch) leaves the epoch-1 checkpoint; the rerun resumes there and reaches
    the uninterrupted run's best validation loss within KILL_TOL. Every run is
    a fresh process with the same thread count, as a rerun of the rule is."""
    kw = dict(epochs=3, batch_size=16, lr=1e-3, seed=3, member=1, arch_kwargs=TINY,
              augment=True, log_every=0, device="cpu")
    a = _train_child(data16, tmp_path / "a", 0, kw)
    _train_child(data16, tmp_path / "b", 6, kw)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "b" / "metrics.csv")) == 1
    b = _train_child(data16, tmp_path / "b", 0, kw)
    assert b["resumed_from"] == 1 and b["epochs_run"] == 2 and b["best_epoch"] == a["best_epoch"]
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=KILL_TOL, abs=0)
    print(f"SIGKILL at step 6: best val loss {b['best_val_loss']:.8g} resumed vs "
          f"{a['best_val_loss']:.8g} uninterrupted")


def test_checkpoint_from_before_a_new_key_still_resumes(data16, tmp_path):
    """A ``last.pt`` written before ``resident_uint8`` existed resumes (default False)."""
    kw = dict(batch_size=16, lr=1e-3, arch_kwargs=TINY, log_every=0, device="cpu")
    train(data16, "E_GPa", tmp_path / "r", epochs=1, **kw)
    last = tmp_path / "r" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["meta"]["config"]["resident_uint8"]
    torch.save(ckpt, last)
    summary = train(data16, "E_GPa", tmp_path / "r", epochs=2, **kw)
    assert summary["resumed_from"] == 1 and summary["epochs_run"] == 1
    with pytest.raises(InputError, match="resident_uint8"):
        train(data16, "E_GPa", tmp_path / "r", epochs=3, resident_uint8=True, **kw)


def test_bad_inputs(data16, tmp_path):
    with pytest.raises(InputError, match="target"):
        train(data16, "G_GPa", tmp_path / "x", epochs=1)
    with pytest.raises(InputError, match="split"):
        train(data16, "E_GPa", tmp_path / "x", split="nope", epochs=1)
    with pytest.raises(InputError, match="input_px"):
        train(data16, "E_GPa", tmp_path / "x", input_px=32, epochs=1)
    with pytest.raises(InputError, match="not found"):
        train(tmp_path / "missing.h5", "E_GPa", tmp_path / "x", epochs=1)
    with pytest.raises(InputError, match="compile 'fast'"):
        train(data16, "E_GPa", tmp_path / "x", compile="fast", epochs=1)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_model(tmp_path / "none.pt")


def test_script_copies_outputs_and_keeps_work_dir(data16, tmp_path):
    work = tmp_path / "work"
    job = {"input": {"dataset": str(data16)},
           "output": {"best": str(tmp_path / "out" / "best.pt"),
                      "last": str(tmp_path / "out" / "last.pt"),
                      "metrics": str(tmp_path / "out" / "metrics.csv")},
           "params": {"target": "E_GPa", "split": "blocked", "epochs": 2, "batch_size": 16,
                      "lr": 1e-3, "input_px": None, "augment": True, "device": "cpu",
                      "bf16": True, "compile": False, "seed": 0, "member": 0, "patience": 5,
                      "factor": 0.9, "work_dir": str(work), "arch_kwargs": TINY},
           "threads": 2}
    run_script("train_model", job, tmp_path)
    assert (work / "last.pt").exists()
    m = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert m["epoch"].tolist() == [1, 2]
    assert (tmp_path / "out" / "best.pt").read_bytes() == (work / "best.pt").read_bytes()
    _, meta = load_model(tmp_path / "out" / "best.pt", "cpu")
    assert meta["split"] == "blocked"
    shutil.rmtree(tmp_path / "out")
