"""The command line of reproduce.py: rebuild the paper's tables and figures, and inspect the run store.

Bad input raises UserError, which ``main`` prints as one line and turns into exit status 2;
Ctrl-C exits with status 130 and says how to resume. Heavy modules (torch, pandas, matplotlib)
are imported inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from benchmark.config import PROFILES
from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.grid import Plan

MAX_SEEDS = 1000  # a grid of more seeds than this is a typo, not a plan
PROG = "reproduce.py"

PROFILE_HELP = {
    "smoke": "seconds per run: tiny models and data, for tests and a first look",
    "quick": "CPU minutes per table: narrower models, fewer epochs, embedded data or stand-ins",
    "paper": "the paper's settings (docs/spec.md section 5): real datasets, full models and epochs",
}

EXAMPLES = """\
examples:
  reproduce.py --list                          what can be rebuilt, and how it maps to the paper
  reproduce.py --table 2                       Table 2, quick profile, default seeds
  reproduce.py --table 2 3 --figure 4          several at once; shared runs are trained once
  reproduce.py --all --profile smoke --jobs 2  everything, in seconds per run
  reproduce.py --table 6 --dry-run             the grid: cached / to run / failed, and a time estimate
  reproduce.py --table 3 --launcher slurm --slurm-partition gpu    one Slurm job per run
  reproduce.py --all --profile paper --launcher slurm --no-wait   submit; the same command later collects
  reproduce.py --table 3 --seeds 5             seeds 0..4;  --seeds 0,3,7 or --seeds 2-4 pick seeds
  reproduce.py --table 5 --profile paper --data-root /data --device cuda   (ImageNet in /data/imagenet)
  reproduce.py runs list --method blaq --status completed
  reproduce.py runs show 3f2a9c1b              a run by (a unique prefix of) its id
  reproduce.py runs compare 3f2a9c1b 77e01d4a
  reproduce.py runs export --csv runs.csv

the grid:
  The runs of the requested tables and figures are pooled and deduplicated by run id (the md5 of
  the resolved run config). A run completed in the store is reused ("cached"); a missing one runs;
  an interrupted or killed one resumes from its last epoch checkpoint; a failed one is kept as
  failed (shown as such in the table) unless --retry-failed. Runs execute in --jobs worker
  processes with max(1, cores // jobs) torch threads each. Ctrl-C stops the workers cleanly:
  run the same command again to resume. The torch thread count changes results in the last bits
  (and a run id does not include it: each run records its threads), so keep --jobs fixed within
  one store where bitwise-equal reruns and resumes matter.

launchers:
  --launcher local (default) trains in worker processes on this machine, on its GPUs round-robin;
  --launcher slurm submits one Slurm job per run (submitit, job arrays) into the same store (on a
  shared file system), waits with the same progress bar, then renders; with --no-wait it submits
  and returns, and the same command later shows what is still running and renders when all are
  done. A run being trained by a live process anywhere (its lease in the store) is never trained
  twice. See the README's "Slurm and every GPU of a node".

exit status: 0 done, 1 some runs failed or were busy (tables are rendered anyway, with those
cells marked), 2 bad arguments or store, 3 runs still running (--no-wait; nothing rendered
yet), 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UserErrors: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``, or a one-line error that says ``what`` it must be."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, not {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key or not value.strip():
        raise argparse.ArgumentTypeError(f"give KEY=VALUE (an sbatch option without its --), not {text!r}")
    return key, value.strip()


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3"``: the first three seeds 0, 1, 2; ``"0,4,7"``: those seeds; ``"2-4"``: 2, 3, 4.

    A single explicit seed is ``"7,"`` or ``"7-7"``. UserError on anything else.
    """
    hint = "give a count (3 = seeds 0,1,2), a list (0,4,7) or a range (2-4)"
    text = text.strip()
    try:
        if "," in text:
            seeds = tuple(int(s) for s in text.split(",") if s.strip())
        elif "-" in text[1:]:
            lo, hi = (int(s) for s in text.split("-", 1))
            if hi - lo + 1 > MAX_SEEDS:
                raise UserError(f"{text!r} names more than {MAX_SEEDS} seeds")
            seeds = tuple(range(lo, hi + 1))
        else:
            count = int(text)
            if count < 1:
                raise UserError(f"{text!r} is not a count of seeds (at least 1); {hint}")
            if count > MAX_SEEDS:
                raise UserError(f"{text!r}: at most {MAX_SEEDS} seeds")
            seeds = tuple(range(count))
    except (ValueError, OverflowError) as err:
        raise UserError(str(err) if isinstance(err, UserError) else f"{text!r}: {hint}") from None
    if not seeds:
        raise UserError(f"{text!r} names no seed; {hint}")
    if any(s < 0 for s in seeds):
        raise UserError(f"{text!r}: seeds are non-negative integers; {hint}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{text!r} repeats a seed; give each seed once")
    return seeds


def _seeds_arg(text: str) -> tuple[int, ...]:
    try:
        return parse_seeds(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of reproduce.py, with the ``runs`` subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Rebuild the tables and figures of the BLAQ paper (AAAI 2024) from recorded "
        "training runs, training the runs that are missing.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to rebuild")
    what.add_argument("--table", type=int, nargs="+", action="extend", default=[], metavar="N",
                      help="table number(s), e.g. --table 2 3 (see --list)")
    what.add_argument("--figure", type=int, nargs="+", action="extend", default=[], metavar="N",
                      help="figure number(s), e.g. --figure 4")
    what.add_argument("--all", action="store_true", help="every table and figure")
    what.add_argument("--list", action="store_true",
                      help="list the tables and figures (with their paper mapping and grid size), "
                      "methods, tasks and profiles, then exit")
    how = parser.add_argument_group("how")
    how.add_argument("--profile", choices=PROFILES, default=None,
                     help="; ".join(f"{k}: {v}" for k, v in PROFILE_HELP.items()) + " (default: quick)")
    how.add_argument("--seeds", type=_seeds_arg, default=None, metavar="S",
                     help="a count N (seeds 0..N-1), a list 0,4,7 or a range 2-4 "
                     "(default: the profile's default seeds, see --list)")
    how.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                     help="local launcher: parallel runs (default: one per CPU core, at most 8; "
                     "on a GPU machine --runs-per-gpu per GPU)")
    how.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="where runs train (default: auto = cuda if available)")
    how.add_argument("--retry-failed", action="store_true",
                     help="rerun the runs that failed before (by default they stay failed)")
    how.add_argument("--dry-run", action="store_true",
                     help="print the grid (each run: cached / run / resume / failed, and where it "
                     "goes), the launcher and a time estimate; train nothing, write nothing")
    launch = parser.add_argument_group(
        "launchers", "where the runs train: --launcher local (default: worker processes here), "
        "inline (one after another in this process) or slurm (one Slurm job per run, submitit)")
    launch.add_argument("--launcher", default="local", metavar="NAME",
                        help="local | inline | slurm | one your script registered (default: local)")
    launch.add_argument("--runs-per-gpu", type=_positive_int, default=1, metavar="R",
                        help="local, on a GPU machine: runs that share one GPU (default --jobs = "
                        "GPUs x R; workers are placed on the GPUs round-robin; default 1)")
    launch.add_argument("--no-wait", action="store_true",
                        help="slurm: submit and return; run the same command again later to see "
                        "what is still running, and to render once all are done")
    launch.add_argument("--slurm-partition", default=None, metavar="P",
                        help="slurm: the partition (default: the cluster's)")
    launch.add_argument("--slurm-time", type=_positive_int, default=None, metavar="MIN",
                        help="slurm: time limit per run in minutes, at least 60 (default: from the "
                        "task profile's estimate; a run that hits it is requeued and resumes)")
    launch.add_argument("--slurm-gpus-per-run", type=_non_negative_int, default=None, metavar="N",
                        help="slurm: GPUs per run (default: 1 for the paper profile of the conv "
                        "nets, else 0)")
    launch.add_argument("--slurm-cpus-per-run", type=_positive_int, default=None, metavar="N",
                        help="slurm: CPUs per run, also its torch threads (default: 1; 4 with a GPU)")
    launch.add_argument("--slurm-mem", type=_positive_float, default=None, metavar="GB",
                        help="slurm: memory per run in GB (default: the cluster's per-CPU default)")
    launch.add_argument("--slurm-max-parallel", type=_positive_int, default=None, metavar="N",
                        help="slurm: jobs of one array running at once (default: no limit)")
    launch.add_argument("--slurm-opt", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="slurm: any other sbatch option, e.g. --slurm-opt account=proj "
                        "--slurm-opt qos=high (repeatable)")
    where = parser.add_argument_group("where")
    where.add_argument("--runs-dir", default="runs", metavar="DIR",
                       help="the run store (default: runs)")
    where.add_argument("--out-dir", default=".", metavar="DIR",
                       help="where tables/ and figures/ are written (default: .)")
    where.add_argument("--data-root", default=None, metavar="DIR",
                       help="datasets (default: $BLAQ_DATA_ROOT, else ./data)")
    where.add_argument("--download", action="store_true",
                       help="download the datasets torchvision can fetch (once, before the runs start)")
    parser.set_defaults(handler=_reproduce)

    sub = parser.add_subparsers(title="subcommands", dest="command", metavar="runs")
    _add_runs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    runs_dir = "runs"
    try:
        args = build_parser().parse_args(argv)
        runs_dir = args.runs_dir
        return args.handler(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except UserError as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the run store {runs_dir} is intact (finished runs are kept, "
              f"interrupted ones keep their last epoch): run the same command again to resume",
              file=sys.stderr)
        return 130


# --------------------------------------------------------------------------------------------
# the grid: --table / --figure / --all / --list


def _selected_specs(args: argparse.Namespace) -> list[Any]:
    from benchmark.specs import SPECS, get_spec

    if args.all:
        return list(SPECS.values())
    specs = [get_spec("table", n) for n in args.table] + [get_spec("figure", n) for n in args.figure]
    return list({s.key: s for s in specs}.values())


def _reproduce(args: argparse.Namespace) -> int:
    args.profile = args.profile or "quick"
    if args.list:
        print(list_text(args.profile))
        return 0
    if not (args.table or args.figure or args.all):
        raise UserError("nothing to rebuild: give --table N, --figure N, --all, or --list")
    from benchmark import grid, preflight

    specs = _selected_specs(args)
    device = _check_device(args.device)
    preflight.check_outputs(Path(args.out_dir), args.profile)
    launcher = grid.make_launcher(args.launcher, _launch_options(args, device))
    configs = grid.expand(specs, args.profile, args.seeds)
    plan = grid.plan_grid(configs, args.runs_dir, retry_failed=args.retry_failed)
    names = ", ".join(s.key for s in specs)
    if args.dry_run:
        print(_dry_run_text(plan, names, launcher, args))
        return 0
    if plan.to_run:  # before anything is written: the store can take runs, the data is there
        preflight.check_store_writable(Path(args.runs_dir))
        preflight.check_data(((r.config.task, r.config.profile) for r in plan.to_run),
                             args.data_root, download=args.download)
    counts = plan.counts()
    print(f"{names} ({args.profile}): {counts['total']} runs, {counts['cached']} cached, "
          f"{len(plan.to_run)} to run ({counts['resume']} resume), {counts['failed']} failed"
          + (f"; {launcher.describe(plan.to_run)}" if plan.to_run else ""),
          flush=True)
    report = grid.execute(plan, data_root=args.data_root, device=device, download=False,
                          progress=True, launcher=launcher)  # (fetched by the preflight)
    incomplete = report.incomplete()
    if plan.to_run:
        failed_now = report.count("failed") - (len(incomplete) - report.count("incomplete"))
        print(f"grid {'done' if report.done else 'submitted'} in {_duration(report.seconds)}: "
              f"{report.count('completed')} completed, {failed_now} failed"
              + (f", {len(incomplete)} incomplete" if incomplete else "")
              + f", {report.count('busy')} busy, "
              f"{counts['cached'] + report.count('cached')} cached"
              + (f", {len(report.left)} still running" if report.left else ""), flush=True)
    failures = report.failures()
    if failures:
        print(f"{len(failures)} failed run(s) (their cells say so; --retry-failed reruns them; "
              f"`{PROG} runs show ID` for details):")
        for run, reason in failures:
            print(f"  {run.run_id}  {run.label}: {reason}")
    if incomplete:
        print(f"{len(incomplete)} incomplete run(s) (stopped by the machine, not by their settings; "
              f"they keep their last epoch: run the same command again to resume them):")
        for run, reason in incomplete:
            print(f"  {run.run_id}  {run.label}: {reason}")
    busy = report.busy()
    if busy:
        print(f"{len(busy)} busy run(s) (another process is training them; rerun when it is done):")
        for run in busy:
            print(f"  {run.run_id}  {run.label}")
    if report.left:
        print(f"{len(report.left)} run(s) still queued or running (--no-wait); run the same "
              f"command again to see them, and to render once all are done:")
        for run, where in report.left:
            print(f"  {run.run_id}  {run.label}  [{where}]")
        return 3
    for spec in specs:
        started = time.monotonic()
        rendered = spec.render(args.runs_dir, args.profile, args.seeds, args.out_dir)
        print(f"\n{rendered.text.rstrip()}\n")
        files = ", ".join(str(p) for p in rendered.paths)
        print(f"{spec.key} written to {files} ({time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failures or busy or incomplete else 0


def _launch_options(args: argparse.Namespace, device: str) -> Any:
    from benchmark.launchers import LaunchOptions, SlurmOptions

    slurm = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time,
                         gpus_per_run=args.slurm_gpus_per_run, cpus_per_run=args.slurm_cpus_per_run,
                         mem_gb=args.slurm_mem, max_parallel=args.slurm_max_parallel,
                         opts=tuple(args.slurm_opt))
    return LaunchOptions(jobs=args.jobs, device=device, runs_per_gpu=args.runs_per_gpu,
                         wait=not args.no_wait, slurm=slurm)


def _check_device(device: str) -> str:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda, but torch sees no CUDA device; use --device cpu or auto")
    return device


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _dry_run_text(plan: Plan, names: str, launcher: Any, args: argparse.Namespace) -> str:
    from benchmark import grid

    est = grid.estimate_seconds(plan.to_run, plan.runs_dir)
    where = launcher.placement(plan.to_run)
    rows = [("run id", "action", "run", "est", "where")]
    for r in plan.runs:
        seconds = est.get(r.run_id)
        rows.append((r.run_id, r.action, r.label,
                     f"{_duration(seconds[0])} ({seconds[1]})" if seconds else "",
                     where.get(r.run_id, "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"dry run: {names}, profile {args.profile}, store {plan.runs_dir}"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=True)).rstrip()
              for row in rows]
    c = plan.counts()
    lines.append(f"{c['total']} runs: {c['cached']} cached, {c['run']} to run, {c['resume']} to "
                 f"resume, {c['retry']} failed to retry, {c['failed']} failed (kept; "
                 f"--retry-failed reruns them)")
    if plan.to_run:
        lines.append(f"launcher {launcher.describe(plan.to_run)}")
    if plan.to_run and not est:
        lines.append("estimate: none (no past runs of these settings in the store, and the task "
                     "profiles give no est_seconds)")
    elif plan.to_run:
        total = sum(s for s, _ in est.values())
        slots = launcher.slots(plan.to_run)
        unknown = len(plan.to_run) - len(est)
        lines.append(f"estimate: {_duration(total)} of runs; {slots} at a time, about "
                     f"{_duration(total / slots)} (per-run times from past runs in the store where "
                     f"there are some, else the task profiles' single-thread est_seconds)"
                     + (f"; {unknown} runs without an estimate" if unknown else ""))
    lines.append("nothing was trained or written (dry run)")
    return "\n".join(lines)


def list_text(profile: str = "quick") -> str:
    """What --list prints: tables and figures, methods, tasks and profiles, from their registries."""
    from benchmark import grid
    from benchmark.methods import METHODS
    from benchmark.specs import SPECS, default_seeds
    from benchmark.tasks import TASKS

    seeds = default_seeds(profile)
    out = [f"Tables and figures (runs for profile {profile}, default seeds "
           f"{', '.join(map(str, seeds))}; select with --table N / --figure N / --all):"]
    for spec in SPECS.values():
        n = len(grid.expand([spec], profile, None))
        out.append(f"  {spec.kind} {spec.number}  [{spec.key}]  {spec.title}  ({n} runs)")
        out.append(f"      paper: {spec.paper}")
        out.append(f"      shows: {spec.description}")
    out.append("\nMethods (bits each supports):")
    for m in METHODS.values():
        out.append(f"  {m.name:<5} {m.label:<15} bits {','.join(map(str, m.bits)):<16} {m.description}")
    out.append("\nTasks (a/m: BLAQ's default blend and period; per profile: epochs, batch, "
               "est. seconds of one run on one thread):")
    for t in TASKS.values():
        profs = "; ".join(
            f"{p}: {t.profile(p).epochs} ep, batch {t.profile(p).batch_size}"
            + (f", ~{t.profile(p).est_seconds:.0f} s" if t.profile(p).est_seconds else "")
            for p in PROFILES)
        out.append(f"  {t.name:<18} {t.label} ({t.dataset}), a={t.default_a:g} m={t.default_m}")
        out.append(f"      {profs}")
    from benchmark.launchers import LAUNCHERS

    out.append("\nLaunchers (--launcher; see the README's \"Slurm and every GPU of a node\"):")
    for entry in LAUNCHERS.values():
        out.append(f"  {entry.name:<7} {entry.description}")
    out.append("\nProfiles (--profile):")
    for p in PROFILES:
        out.append(f"  {p:<6} {PROFILE_HELP[p]}; default seeds {', '.join(map(str, default_seeds(p)))}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# runs: list / show / compare / export

LIST_COLUMNS = ["run_id", "status", "task", "method", "bits", "scheme", "a", "m", "profile",
                "epochs", "seed", "test_acc", "train_time_s"]


def _add_runs_parser(sub: Any) -> None:
    common = _Parser(add_help=False)
    # SUPPRESS: an option given before `runs` (reproduce.py --runs-dir X runs list) is kept
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help="the run store (default: runs)")
    filters = _Parser(add_help=False)
    f = filters.add_argument_group("filters")
    f.add_argument("--task", help="only this task")
    f.add_argument("--method", help="only this method")
    f.add_argument("--bits", type=int, help="only this bit width (32 = full precision)")
    f.add_argument("--status", choices=("completed", "failed", "incomplete"), help="only this status")
    f.add_argument("--profile", choices=PROFILES, default=argparse.SUPPRESS,
                   help="only this profile")

    runs = sub.add_parser("runs", help="inspect the run store: list, show, compare, export, compare-stores",
                          description="Inspect the run store.",
                          epilog=f"examples:\n  {PROG} runs list --task mnist-mlp --bits 1\n"
                          f"  {PROG} runs show 3f2a9c1b\n  {PROG} runs compare 3f2a9c1b 77e01d4a\n"
                          f"  {PROG} runs export --csv runs.csv --status completed",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="{list,show,compare,export,compare-stores}")
    p = rsub.add_parser("list", parents=[common, filters], help="one line per run, filtered")
    p.set_defaults(handler=_runs_list)
    p = rsub.add_parser("show", parents=[common], help="one run: config, status, result, metrics")
    p.add_argument("run_id", help="a run id or a unique prefix of one")
    p.set_defaults(handler=_runs_show)
    p = rsub.add_parser("compare", parents=[common], help="several runs side by side")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run ids or unique prefixes")
    p.set_defaults(handler=_runs_compare)
    p = rsub.add_parser("export", parents=[common, filters], help="all runs (filtered) as CSV")
    p.add_argument("--csv", required=True, metavar="PATH", help="the CSV file to write")
    p.set_defaults(handler=_runs_export)
    from benchmark import compare

    compare.add_parser(rsub)  # runs compare-stores STORE_A STORE_B: cell by cell


def _load(args: argparse.Namespace) -> Any:
    from benchmark.runsdb import load_runs
    from benchmark.store import open_store

    open_store(args.runs_dir, create=False)
    return load_runs(args.runs_dir)


def _filtered(df: Any, args: argparse.Namespace) -> Any:
    for col in ("task", "method", "bits", "status", "profile"):
        value = getattr(args, col, None)
        if value is not None:
            df = df[df[col] == value]
    return df


def _resolve_ids(df: Any, wanted: Sequence[str], runs_dir: str) -> list[str]:
    ids = list(df["run_id"])
    out = []
    for w in wanted:
        hits = [i for i in ids if i.startswith(w)]
        if len(hits) != 1:
            what = "no run" if not hits else f"{len(hits)} runs"
            raise UserError(f"{what} in {runs_dir} with id {w!r}; "
                            f"see `{PROG} runs list --runs-dir {shlex.quote(runs_dir)}`")
        out.append(hits[0])
    return out


def _frame_text(df: Any) -> str:
    """A DataFrame as aligned text: 4 significant digits, "-" for missing values."""
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 250, "display.max_colwidth", 60):
        return df.map(_fmt).to_string(index=False)


def _runs_list(args: argparse.Namespace) -> int:
    df = _filtered(_load(args), args)
    if not len(df):
        print(f"no runs in {args.runs_dir} match")
        return 0
    print(_frame_text(df[LIST_COLUMNS]))
    counts = df["status"].value_counts()
    print(f"{len(df)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from benchmark.runsdb import CONFIG_COLUMNS, RESULT_COLUMNS, load_metrics

    df = _load(args)
    (rid,) = _resolve_ids(df, [args.run_id], args.runs_dir)
    row = df[df["run_id"] == rid].iloc[0]

    def fields(cols: Sequence[str]) -> str:
        return "  ".join(f"{c}={_fmt(row[c])}" for c in cols if _fmt(row[c]) != "-")

    print(f"run {rid}  status {row['status']}  ({Path(args.runs_dir) / rid})")
    print(f"config:  {fields(CONFIG_COLUMNS)}")
    if row["status"] == "completed":
        print(f"result:  {fields(RESULT_COLUMNS)}")
    if row["status"] == "failed":
        print(f"failed:  {row['fail_reason']}")
    print(f"data:    {fields(('dataset', 'stand_in', 'data_source', 'data_note'))}")
    print(f"env:     {fields(('code_version', 'device', 'torch', 'threads', 'start_time', 'stop_time'))}")
    metrics = load_metrics(args.runs_dir, [rid])
    if len(metrics):
        wide = metrics.pivot_table(index="step", columns="metric", values="value").reset_index()
        wide = wide.rename(columns={"step": "epoch"})
        print("metrics per epoch:")
        print(_frame_text(wide))
    return 0


def _runs_compare(args: argparse.Namespace) -> int:
    from benchmark.runsdb import CONFIG_COLUMNS, RESULT_COLUMNS

    df = _load(args)
    ids = _resolve_ids(df, args.run_ids, args.runs_dir)
    cols = ["status", *CONFIG_COLUMNS, *RESULT_COLUMNS, "dataset", "stand_in", "code_version",
            "threads", "fail_reason"]
    rows = df.set_index("run_id").loc[ids, cols]
    lines = [("", *ids)]
    for col in cols:
        values = [_fmt(v) for v in rows[col]]
        if all(v == "-" for v in values):
            continue
        mark = "*" if len(set(values)) > 1 else " "
        lines.append((f"{mark} {col}", *values))
    widths = [max(len(line[i]) for line in lines) for i in range(len(ids) + 1)]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print("(* differs)")
    return 0


def _runs_export(args: argparse.Namespace) -> int:
    df = _filtered(_load(args), args)
    path = Path(args.csv)
    if path.is_dir():
        raise UserError(f"--csv {path} is a folder; give a file name, e.g. {path / 'runs.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    except OSError as err:
        raise UserError(f"cannot write --csv {path}: {err.strerror or err}") from None
    print(f"wrote {len(df)} runs to {path}")
    return 0


def _fmt(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
