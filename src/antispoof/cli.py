"""Shared entry point of every stage: `--help`, params loading/validation before any work, one-line
errors with exit status 2 for bad input, and an untracked provenance log per run."""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from typing import Callable

from antispoof.errors import DEBUG_ENV, as_user_error


def run_stage(
    name: str,
    description: str,
    body: Callable[[argparse.Namespace, dict], dict | None],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse arguments, load and validate params.yaml, run `body(args, params)`.

    Returns the process exit status: 0 on success, 2 on a UserError or another expected failure
    (`antispoof.errors.as_user_error`: a full disk, ...), printed on one line (with the traceback too when
    ANTISPOOF_DEBUG=1). Anything else is a bug and propagates with its traceback. Warnings print as one
    line each.
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
        with warnings.catch_warnings():  # restores the default warning format when the stage returns
            warnings.showwarning = _one_line_warning(name)
            from antispoof.params import load_params

            params = load_params(args.params)
            summary = body(args, params)
    except Exception as e:
        err = as_user_error(e)
        if err is None:
            raise
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"antispoof {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    try:
        from antispoof.repro.provenance import write_provenance

        write_provenance(name, args=vars(args), start=start, end=time.time(), extra=summary)
    except ImportError:  # pragma: no cover - provenance module is optional during bootstrap
        pass
    return 0


def _one_line_warning(name: str):
    """warnings.showwarning for stages: `antispoof <stage>: warning: <message>`, without the source line."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"antispoof {name}: warning: {message}", file=file or sys.stderr, flush=True)
    return show
