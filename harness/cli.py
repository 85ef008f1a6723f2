"""The ``harness`` console script: validate or show suites, compare runs, cache, generate data.

Exit codes: 0 success, 1 problems found (invalid suite, corrupt cache entry, a gate that
regressed under ``compare --fail-on-regression``), 2 bad usage or an unreadable file.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness_harness.errors import HarnessError
from robustness_harness.store.cache import Cache

if TYPE_CHECKING:
    from robustness_harness.report.compare import GateChange


def _suite_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.y*ml") if "baselines" not in p.parts)
        elif path.exists():
            files.append(path)
        else:
            raise HarnessError("no such file or directory", file=path, hint="check the path")
    return files


def cmd_validate(args: argparse.Namespace) -> int:
    """Schema-check suite files (``--deep``: also the preflight); one line per file or
    problem."""
    from robustness_harness.suite import load_suite

    session = _deep_session(args) if args.deep else None
    bad = 0
    for path in _suite_files(args.suites):
        try:
            suite = load_suite(path)
        except HarnessError as err:
            bad += 1
            print(f"INVALID {err}")
            continue
        if session is not None:
            problems = _preflight(session, path)
            if problems:
                bad += 1
                for line in problems:
                    print(f"INVALID {line}")
                continue
        spec = suite.spec
        gates = len(spec.items())
        deep = " (deep: model, weights, images, one batch, compression steps)" if args.deep else ""
        print(f"ok      {path}: '{spec.suite}', {len(spec.variants)} variants, {gates} gates{deep}")
    return 1 if bad else 0


def _deep_session(args: argparse.Namespace) -> Any:
    """A CPU session for the preflight, with the cache and data options of a run."""
    from robustness_harness.run.session import HarnessOptions, HarnessSession

    options = HarnessOptions(cache_dir=args.cache, device="cpu", data_root=args.data_root)
    return HarnessSession(options, progress=lambda _line: None)


def _preflight(session: Any, path: Path) -> list[str]:
    from robustness_harness.run.preflight import preflight

    try:
        return preflight(session, session.suite(path))
    except HarnessError as err:
        return [str(err)]


def cmd_show(args: argparse.Namespace) -> int:
    """Print a suite's plan without building anything."""
    from robustness_harness.run.plan import inspecting_session, render_plan
    from robustness_harness.run.session import HarnessOptions, HarnessSession

    path = Path(args.suite)
    if not path.is_file():
        raise HarnessError("no such suite file", file=path, hint="pass a suite .yaml file")
    options = HarnessOptions(
        cache_dir=args.cache,
        device="cpu",
        seed=args.seed,
        limit=args.limit,
        data_root=args.data_root,
    )
    session = inspecting_session(HarnessSession(options, progress=lambda _line: None))
    try:
        suite = session.suite(path)
    except HarnessError as err:
        print(f"INVALID {err}")
        return 1
    print(render_plan(suite, session))
    return 0


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of images, got {text!r}")
    return value


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {text!r}")
    return int(text)


def cmd_cache(args: argparse.Namespace) -> int:
    """List, verify or clear the cache."""
    cache = Cache.from_env(args.cache)
    if args.action == "ls":
        total = 0
        entries = cache.ls()
        for entry in entries:
            size = sum(f.stat().st_size for f in entry.path.rglob("*") if f.is_file())
            total += size
            label = entry.meta.get("variant") or entry.meta.get("images") or ""
            created = entry.meta.get("created", "")
            print(f"{entry.kind:6} {entry.key[:16]}  {size / 1e6:8.2f} MB  {created}  {label}")
        n = len(entries)
        print(f"{n} entr{'y' if n == 1 else 'ies'}, {total / 1e6:.2f} MB in {cache.root}")
        return 0
    if args.action == "verify":
        problems = cache.verify()
        for where, reason in problems:
            print(f"CORRUPT {getattr(where, 'path', where)}: {reason}")
        print(f"{len(problems)} problem(s) in {cache.root}")
        return 1 if problems else 0
    if args.kind is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]*", args.kind):
        raise HarnessError(
            f"cache kind {args.kind!r} is not a name", field="--kind", hint="e.g. --kind ckpt"
        )
    removed = cache.clear(args.kind)
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.root}")
    return 0


def cmd_gen_data(args: argparse.Namespace) -> int:
    """Write an embedded dataset as COCO json + PNG images."""
    from robustness_harness.data.toydrive import generate_toydrive
    from robustness_harness.data.toysigns import generate_toysigns

    generate = {"toydrive": generate_toydrive, "toysigns": generate_toysigns}[args.dataset]
    sizes = {k: v for k, v in (("n_train", args.n_train), ("n_val", args.n_val)) if v is not None}
    paths = generate(Path(args.out), seed=args.seed, **sizes)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two results.json files gate by gate: a table and a summary line; 1 with
    ``--fail-on-regression`` when a gate regressed or was removed."""
    from robustness_harness.report.compare import compare_results, load_results

    comparison = compare_results(load_results(args.a), load_results(args.b))
    changes = [c for c in comparison.changes if not (args.only_changes and c.kind == "same")]
    print(f"{comparison.a} → {comparison.b}")
    if changes:
        print(_aligned([_COMPARE_COLUMNS, *(_compare_cells(c) for c in changes)]))
    print(comparison.summary())
    return 1 if args.fail_on_regression and comparison.regressed else 0


def cmd_report_merge(args: argparse.Namespace) -> int:
    """Merge the reports of the jobs of one sharded run into one results.json and
    report.html."""
    from robustness_harness.report.merge import merge_reports

    results, page, gates = merge_reports(args.reports, Path(args.out))
    print(f"merged {len(args.reports)} jobs: {gates} gates → {results}, {page}")
    return 0


_COMPARE_COLUMNS = ("gate", "metric", "status", "value", "delta", "change")


def _compare_cells(change: GateChange) -> tuple[str, ...]:
    """One table row of a gate: its status once when it stayed, ``a → b`` else."""
    status = f"{change.status_a or '-'} → {change.status_b or '-'}"
    if change.status_a == change.status_b:
        status = str(change.status_a)
    delta = "" if change.delta is None else f"{change.delta:+.4g}"
    return (
        change.name,
        change.metric or "-",
        status,
        f"{_value(change.value_a)} → {_value(change.value_b)}",
        delta,
        change.kind,
    )


def _value(value: float | None) -> str:
    """A recorded value as the gate table shows it (``-`` when there is none)."""
    return "-" if value is None else f"{value:.4f}"


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart, trailing blanks stripped."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check suite files against the schema")
    validate.add_argument("suites", nargs="+", help="suite files or directories")
    validate.add_argument(
        "--deep",
        action="store_true",
        help="also import factories, load checkpoints, open every image, run one batch "
        "and dry-run every compression step (seconds; builds nothing)",
    )
    validate.add_argument("--cache", default=None, help="with --deep: as pytest --harness-cache")
    validate.add_argument(
        "--data-root", default=None, help="with --deep: as pytest --harness-data-root"
    )
    validate.set_defaults(fn=cmd_validate)
    show = sub.add_parser(
        "show", help="the plan of a suite: variants, recipes, checks, cached checkpoints"
    )
    show.add_argument("suite", help="a suite file")
    show.add_argument(
        "--cache", default=None, help="cache dir (default $HARNESS_CACHE or ./.harness-cache)"
    )
    show.add_argument("--data-root", default=None, help="as pytest --harness-data-root")
    show.add_argument("--limit", type=_positive, default=None, help="as pytest --harness-limit")
    show.add_argument("--seed", type=_seed, default=None, help="as pytest --harness-seed")
    show.set_defaults(fn=cmd_show)
    cache = sub.add_parser("cache", help="inspect or clear the checkpoint/prediction cache")
    cache.add_argument("action", choices=["ls", "verify", "clear"])
    cache.add_argument("--kind", default=None, help="with clear: only this kind (ckpt, pred, ...)")
    cache.add_argument(
        "--cache", default=None, help="cache dir (default $HARNESS_CACHE or ./.harness-cache)"
    )
    cache.set_defaults(fn=cmd_cache)
    gen = sub.add_parser("gen-data", help="write an embedded dataset as COCO json + images")
    gen.add_argument("dataset", choices=["toydrive", "toysigns"])
    gen.add_argument("--out", required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--n-train", type=int, help="default: toydrive 2000, toysigns 6000")
    gen.add_argument("--n-val", type=int, help="default: toydrive 400, toysigns 1000")
    gen.set_defaults(fn=cmd_gen_data)
    compare = sub.add_parser(
        "compare", help="compare two runs' results.json gate by gate (regressed, fixed, ...)"
    )
    compare.add_argument("a", help="the earlier results.json (or its --harness-report dir)")
    compare.add_argument("b", help="the later results.json (or its --harness-report dir)")
    compare.add_argument(
        "--only-changes", action="store_true", help="leave out the gates that stayed the same"
    )
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a gate passed in A and failed or errored in B, or is missing from B",
    )
    compare.set_defaults(fn=cmd_compare)
    report = sub.add_parser("report", help="work with --harness-report outputs")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    merge = report_sub.add_parser(
        "merge",
        help="join the reports of the jobs of one sharded run (--harness-shard K/N)",
    )
    merge.add_argument(
        "reports",
        nargs="+",
        metavar="DIR",
        help="a job's --harness-report dir or results.json",
    )
    merge.add_argument("-o", "--out", required=True, help="directory for the merged report")
    merge.set_defaults(fn=cmd_report_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` script; returns the exit code."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `harness cache ls | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
