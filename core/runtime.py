"""How a step runs fast, for inversion and training alike: bf16 autocast where the device has native kernels,
torch.compile (its CUDA-graph modes mark each step), and a whole step captured as one CUDA graph. The options are
measured in `benchmarks/` (`pti_speed.py`, `train_speed.py`); the code paths are the same on the CPU and the GPU."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs


def native_autocast(device: torch.device, autocast: torch.dtype | None) -> bool:
    """Whether autocast to this dtype pays here. A CPU without oneDNN's bf16 kernels (AVX2 only, no AVX-512)
    emulates bf16 convolutions, many times slower than fp32: fp32 there."""
    if autocast is None:
        return False
    return device.type != "cpu" or autocast != torch.bfloat16 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def speed_context(device: torch.device, autocast: torch.dtype | None) -> AbstractContextManager:
    """Autocast to `autocast` where it pays (`native_autocast`), else nothing."""
    return torch.autocast(device.type, dtype=autocast) if native_autocast(device, autocast) else nullcontext()


def maybe_compile(fn: Callable, compile: bool | str, cuda_graph: bool = False) -> Callable:
    """`compile`: False, True (torch.compile's default mode) or a mode name. "reduce-overhead" replays the forward
    and backward as CUDA graphs (a step at batch 1 is launch-bound); a replay overwrites the previous one's outputs,
    so every call marks a new step. With `cuda_graph` (`run_adam` captures the whole step) only kernels are compiled."""
    if not compile:
        return fn
    mode = compile if isinstance(compile, str) else "default"
    if cuda_graph and mode != "default":
        raise ValueError(f"cuda_graph captures the whole step itself: use compile=True with it, not {compile!r}")
    compiled = torch.compile(fn, dynamic=False, mode=mode)
    if mode not in CUDA_GRAPH_MODES:
        return compiled

    def one_step(*args: object) -> object:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args)

    return one_step


def bf16(enabled: bool, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on a GPU when `enabled`; nothing on the CPU, where the trainers stay in float32."""
    return speed_context(device, torch.bfloat16 if enabled and device.type == "cuda" else None)


def side_stream(one_step: Callable[[], None]) -> None:
    """A warm-up step before capture, on a side stream as PyTorch's whole-network capture recipe runs them: they
    create Adam's state and the log, and let cuDNN choose its algorithms, outside the graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        one_step()
    torch.cuda.current_stream().wait_stream(side)


def capture_cuda_graph(one_step: Callable[[], None]) -> Callable[[], None]:
    """`one_step` captured as one CUDA graph; returns its replay. The step frees the gradients before its backward,
    so the captured backward allocates them in the graph's pool and every replay rewrites them in place. Capturing
    records the step without running it."""
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        one_step()
    return graph.replay
