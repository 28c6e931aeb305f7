"""Peak training memory of one configuration, measured in a fresh process: ``python -m benchmarks.peakmem JSON``.

Why a subprocess and not tracemalloc: tracemalloc only sees Python-heap allocations, torch allocates tensors in
C++. On CPU we read the kernel's resident-set high-water mark (VmHWM, resettable via /proc/self/clear_refs;
``ru_maxrss`` where it is not), on CUDA ``torch.cuda.max_memory_allocated``. A fresh process per configuration
keeps other models, allocator caches and fragmentation out of the number.

Method: a batch-1 warm-up step first pages in the library code and creates the optimizer state; its
activations are freed and returned to the OS (``malloc_trim``). The measured full-batch step then reports
``step_peak`` = high-water mark − resident size just before it (gradients + saved activations + temporaries),
and the total is ``step_peak`` + the exact bytes of weights and optimizer state, i.e. the quantity CUDA's
``max_memory_allocated`` reports, without the few hundred MB of interpreter and shared libraries.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import sys

import torch

from benchmarks.configs import build, fixed_batch
from benchmarks.measure import make_optimizer, optimizer_state_bytes, parameter_bytes, train_step

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def reset_hwm() -> bool:
    """Reset the peak-RSS mark; False where the kernel or sandbox does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_bytes(resettable: bool) -> int:
    if resettable:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def measure(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = build(spec["backbone"], spec["regime"], rank=spec["rank"], lora_rank=spec.get("lora_rank"), device=device,
                  variant=spec.get("variant"))
    x, y = fixed_batch(model, spec["batch"], device)
    opt = make_optimizer(model, spec["optimizer"])
    train_step(model, opt, x[:1], y[:1], spec["precision"], device)  # warm-up; creates the AdamW state
    opt.zero_grad(set_to_none=True)
    persistent = parameter_bytes(model) + optimizer_state_bytes(opt).total
    release_freed_memory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device) - x.numel() * x.element_size()
        torch.cuda.reset_peak_memory_stats(device)
        train_step(model, opt, x, y, spec["precision"], device)
        torch.cuda.synchronize(device)
        step_peak = torch.cuda.max_memory_allocated(device) - x.numel() * x.element_size() - before
        method = "cuda.max_memory_allocated"
    else:
        resettable = reset_hwm()
        before = rss_bytes()
        train_step(model, opt, x, y, spec["precision"], device)
        step_peak = hwm_bytes(resettable) - before
        method = "VmHWM reset" if resettable else "ru_maxrss"
    return {"persistent_bytes": persistent, "step_peak_bytes": step_peak, "peak_bytes": persistent + step_peak,
            "memory_method": method}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
