"""``spacefold report``: one self-contained HTML file of a results folder."""

from __future__ import annotations

import sys


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML file from a results directory",
        description="One self-contained HTML file (figures embedded, tables, the settings, seeds, command and versions "
        "recorded with each result) from a directory written by spacefold demo, sweep, measure --out or plot. It "
        "opens in any browser without a server or network.",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="directory holding the results")
    p.add_argument("-o", "--out", default="report.html", help="output HTML file (default report.html)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from ..viz.report import write_report

    print(write_report(args.results_dir, args.out, argv=sys.argv[1:]))
    return 0
