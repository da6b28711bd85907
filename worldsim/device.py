"""Where tensors run: `resolve_device("auto" | "cpu" | "cuda" | "cuda:1" | "mps")`, refusing one this machine lacks.

Nothing in worldsim requires a GPU; "auto" picks CUDA when present. Asking for a device that is not there is a
setting to fix (`loop.device=cpu`, `device="auto"`), so it is refused up front with a message, before a run loads data
or builds a model, rather than failing later inside torch with a traceback.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch.device `device` names ('auto': CUDA when present, else CPU); ValueError if this machine lacks it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r}: not a device name ({err}); expected auto, cpu, cuda, cuda:N or mps") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device={device!r}: CUDA is not available here ({why}); use device=cpu, or auto to "
                             "take a GPU when there is one")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}: Apple's MPS is not available here; use device=cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r}: worldsim runs on cpu, cuda or mps; use one of auto, cpu, cuda, mps")
    return dev


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 in hardware: CUDA with bf16 support, or a CPU with AVX512-BF16 or AMX. Elsewhere
    bf16 is emulated on a CPU and runs slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' means bf16 where the device has it natively (a preset-S training step measured 1.4x the tokens/s of fp32
    at 8 clips, 1.6-1.7x at 16-32, on a 2-core Xeon with AMX: the README's fidelity ladder), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The context a training forward runs in: bf16 autocast (matmuls and convolutions in bf16; losses, norms, softmax
    and the model's RoPE stay fp32) or nothing, for fp32. `precision` is resolved: fp32 or bf16."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
