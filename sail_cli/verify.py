"""``sail verify RUN [--repair]``: check every record, pointer, object and step checkpoint of a run.

One line per problem on stdout, then a summary; the exit code is 1 when anything was damaged (also
when ``--repair`` fixed it: run it again to see the run intact), 0 when everything is as recorded.
RUN is a run directory (``runs/<name>``) or a run in a store (``s3://bucket/runs/<name>``).
"""

from __future__ import annotations

import argparse

from sail_core.errors import InputError


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sail_core.io.remote import is_url
    from sail_core.run.verify import verify_run

    if not is_url(args.run) and not Path(args.run).is_dir():
        raise InputError("the run directory does not exist", file=args.run)
    report = verify_run(args.run, repair=args.repair)
    for problem in report.problems:
        print(problem.line())
    print(report.summary())
    return 1 if report.problems else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="check every byte of a run against its recorded hashes (and repair)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("run", help="a run directory or a store URL (s3://...)")
    verify.add_argument("--repair", action="store_true",
                        help="fix what can be fixed: replace lost objects from good copies on this host, set "
                             "aside stages and step checkpoints that cannot be trusted (the next run redoes them)")
    verify.set_defaults(func=cmd_verify)
