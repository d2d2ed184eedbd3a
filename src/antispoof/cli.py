"""Shared entry point of every stage: `--help`, params loading/validation before any work, one-line
errors with exit status 2 for bad input, and an untracked provenance log per run."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from antispoof.errors import UserError


def run_stage(
    name: str,
    description: str,
    body: Callable[[argparse.Namespace, dict], dict | None],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse arguments, load and validate params.yaml, run `body(args, params)`.

    Returns the process exit status: 0 on success, 2 on a UserError (message printed on one line).
    A dict returned by `body` (run statistics that vary between runs, e.g. cache hits) goes to the
    untracked provenance log, never to a tracked output.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m antispoof.{name.replace('-', '_')}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    start = time.time()
    try:
        from antispoof.params import load_params

        params = load_params(args.params)
        summary = body(args, params)
    except UserError as e:
        print(f"antispoof {name}: error: {e}", file=sys.stderr)
        return e.exit_code
    try:
        from antispoof.repro.provenance import write_provenance

        write_provenance(name, args=vars(args), start=start, end=time.time(), extra=summary)
    except ImportError:  # pragma: no cover - provenance module is optional during bootstrap
        pass
    return 0
