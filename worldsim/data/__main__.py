"""`python -m worldsim.data collect key=value ...`: `worldsim collect`, the same CLI and code, in a form torchrun can
start R times, across processes and machines that share a file system:

    torchrun --nproc_per_node=2 -m worldsim.data collect out=DIR steps=N workers=K ...

Each rank plays K workers of the R*K; the dataset is the one `worldsim collect workers=R*K` writes (see
worldsim/data/collect_dist.py). Rank 0 alone prints (the other ranks' stdout is dropped: it would repeat rank 0's).
Started without torchrun, it is `worldsim collect`, one process.
"""

from __future__ import annotations

import contextlib
import os
import sys

USAGE = ("usage: python -m worldsim.data collect out=DIR [key=value ...]   (under torchrun: torchrun "
         "--nproc_per_node=R -m worldsim.data collect ...; `worldsim collect --help` lists the keys)")


def main(argv: list[str] | None = None) -> int:
    from worldsim.cli import main as cli

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["collect"]:  # the first word names the command, as in `python -m worldsim.train world`
        asked = args[:1] in (["-h"], ["--help"])
        print(USAGE, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    if "WORLD_SIZE" not in os.environ:  # not under torchrun: `worldsim collect` exactly, torch never imported
        return cli(args)
    from worldsim.train import dist

    with dist.process_group(), contextlib.ExitStack() as stack:
        if not dist.is_main():
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        return cli(args)


if __name__ == "__main__":
    sys.exit(main())
