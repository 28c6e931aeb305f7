"""Two CPU processes under torchrun (gloo) train to the same result as one process with the same global batch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from adaptertune import RunConfig, run
from adaptertune import store

DDP_SCRIPT = textwrap.dedent("""
    import json, sys
    from adaptertune import RunConfig, run
    from adaptertune.training import distributed
    run(RunConfig.from_dict(json.loads(sys.argv[1])), verbose=False)
    distributed.cleanup()
""")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["digits", "folder"])
def test_two_processes_match_one(isolated_home, tmp_path, source):
    # augmentation draws per rank differ by design, so compare without it (see adaptertune/train.py). The folder's
    # images go through the PIL path: each rank replays its own validation shard after the first epoch (val_replay);
    # its 43 training images are an odd number: the ranks' last batches differ by one image, none is repeated
    if source == "folder":
        import fixtures_data as fx

        source = str(fx.write_image_folder(isolated_home / "pics", per_class=20))
    cfg = RunConfig(dataset=source, backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=3,
                    warmup_epochs=1, batch_size=64, limit=330, augment=False, train_eval_limit=150)
    single = run(cfg, root=isolated_home / "single", verbose=False)
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "ADAPTERTUNE_HOME": str(isolated_home), "ADAPTERTUNE_RESULTS": str(isolated_home / "ddp"),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), json.dumps(cfg.to_dict())],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = store.read_result(cfg.run_id, isolated_home / "ddp")
    assert ddp["status"] == "finished" and ddp["world_size"] == 2
    for key in ("test_loss", "val_loss", "train_loss", "train_eval_acc", "test_acc"):
        assert ddp["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-4, abs=1e-5), key
    a = store.load_metrics(cfg.run_id, isolated_home / "single")
    b = store.load_metrics(cfg.run_id, isolated_home / "ddp")
    assert list(a["train_images"]) == list(b["train_images"])
    assert b["train_loss"].tolist() == pytest.approx(a["train_loss"].tolist(), rel=1e-4)
    assert b["lr"].tolist() == pytest.approx(a["lr"].tolist())
    assert b["val_loss"].tolist() == pytest.approx(a["val_loss"].tolist(), rel=1e-4)
    kept = ddp["numerics"]["val_replay"].startswith("kept")
    assert kept == single["numerics"]["val_replay"].startswith("kept") == (source != "digits")


AGREE_SCRIPT = textwrap.dedent("""
    import torch.distributed as dist
    from adaptertune.training import distributed
    ctx = distributed.setup("cpu")
    # each rank reads a different answer (as two ranks reading a shared file a moment apart can); all act on rank 0's
    print(f"rank {ctx.rank}: {distributed.agreed(ctx, ctx.rank == 0)} {distributed.agreed(ctx, ctx.rank == 1)}")
    import torch
    from torch.utils.data import TensorDataset
    from adaptertune.data import make_loader
    from adaptertune.training.loop import evaluate
    one = TensorDataset(torch.ones(1, 3), torch.zeros(1, dtype=torch.long))  # fewer rows than ranks
    out = evaluate(torch.nn.Linear(3, 2), one, ctx=ctx, batch_size=4, precision="fp32", make_loader=make_loader, seed=0)
    print(f"eval {ctx.rank}: n={out['n']}")
    distributed.cleanup()
""")


@pytest.mark.slow
def test_ranks_act_on_rank_zeros_reading_and_a_split_smaller_than_the_world_is_scored(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(AGREE_SCRIPT)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = sorted(re.findall(r"(?:rank|eval) \d: (?:True|False|n=\d+)(?: True| False)?", proc.stdout))  # interleaved
    assert said == ["eval 0: n=1", "eval 1: n=1", "rank 0: True False", "rank 1: True False"]
