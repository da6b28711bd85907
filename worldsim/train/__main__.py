"""`python -m worldsim.train TASK key=value ...`: `worldsim train TASK ...`, the same CLI and code, in a form torchrun
can start N times:

    torchrun --nproc_per_node=4 -m worldsim.train world data=DIR ae=CKPT batch_size=32 ...

Under torchrun each process joins the process group (worldsim/train/dist.py) and trains its share of every global
batch; rank 0 alone writes the run and prints (the other ranks' stdout is dropped: it would repeat rank 0's). Started
without torchrun, it is `worldsim train`, one process.
"""

from __future__ import annotations

import contextlib
import os
import sys

from worldsim.cli import main as cli
from worldsim.train import dist


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    with dist.process_group(), contextlib.ExitStack() as stack:
        if not dist.is_main():
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        return cli(["train", *args])


if __name__ == "__main__":
    sys.exit(main())
