"""``sweeper`` command line: a thin layer over spec/study/loop/results/report.

One module per command group; each registers its sub-commands. User errors print one line
and exit 2; nothing here runs at import time.
"""

from __future__ import annotations

import argparse
import os
import sys

from sweeper.cli.common import EXIT_INTERRUPTED, EXIT_MAX_FAILURES, EXIT_USAGE
from sweeper.errors import MaxFailuresReached, SweeperError


def _quiet_libraries() -> None:
    # Before TensorFlow is imported anywhere: its C++ logs would bury the progress bar.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def build_parser() -> argparse.ArgumentParser:
    from sweeper.cli import best, browse, launch, report, run, serve, transfer, validate

    parser = argparse.ArgumentParser(prog="sweeper", description="Hyperparameter sweeps for Keras image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, launch, validate, browse, report, best, serve, transfer):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handlers below
        return code
    except MaxFailuresReached as exc:
        print(f"sweeper: {exc}", file=sys.stderr)
        return EXIT_MAX_FAILURES
    except SweeperError as exc:
        print(f"sweeper: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sweeper: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `sweeper show X | head -2`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush must not fail again
        return 0
