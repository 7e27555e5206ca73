"""The interoperability subcommands of ``kgtest``: ``export lm-eval``, ``export
forget-retain`` and ``probe``. :func:`add_commands` adds them to the main parser."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kgtest.errors import InputError

EXAMPLES = {
    "export lm-eval": "kgtest export lm-eval runs/quickstart-seed0 --out runs/lm_eval_tasks",
    "export forget-retain": ("kgtest export forget-retain runs/quickstart-seed0 "
                             "--out runs/forget_retain [--deep]"),
    "probe": ("kgtest probe my_unlearned_model/ --run runs/quickstart-seed0 "
              "--as open_unlearning_npo"),
}


def _sub(sub, name: str, key: str, help_: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_,
                          epilog=f"example:\n  {EXAMPLES[key]}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_commands(sub) -> None:
    """Add ``export`` (``lm-eval``, ``forget-retain``) and ``probe`` to ``kgtest``."""
    ex = sub.add_parser("export", help="export a run for other tools (lm-eval, "
                        "open-unlearning/TOFU-style datasets)",
                        description="Export a run's questions and forget/retain sets.")
    esub = ex.add_subparsers(dest="export_command", metavar="EXPORT_COMMAND")
    esub.required = True
    lm = _sub(esub, "lm-eval", "export lm-eval", "an lm-evaluation-harness task folder "
              "(YAML + JSONL) with the run's direct and CoT questions per split")
    lm.add_argument("run_dir", help="a run folder made by `kgtest train` or `kgtest run`")
    lm.add_argument("--out", required=True, help="task folder (lm_eval --include_path)")
    lm.add_argument("--name", help="task group name (default: kgtest_<run folder name>)")
    lm.add_argument("--json", action="store_true", help="print the result as JSON")
    lm.set_defaults(func=cmd_export_lm_eval)

    fr = _sub(esub, "forget-retain", "export forget-retain", "the run's forget, validation "
              "and retain sets as TOFU-style question/answer tables and raw documents "
              "(JSONL + Parquet; datasets.load_dataset reads them)")
    fr.add_argument("run_dir", help="a run folder made by `kgtest train` or `kgtest run`")
    fr.add_argument("--out", required=True, help="output folder")
    fr.add_argument("--deep", action="store_true",
                    help="also forget a minimal deletion set per target (as --deep methods)")
    fr.add_argument("--json", action="store_true", help="print meta.json")
    fr.set_defaults(func=cmd_export_forget_retain)

    pr = _sub(sub, "probe", "probe", "run every probe of a run on an outside Hugging Face "
              "checkpoint (e.g. unlearned with another library) and add it to the run's "
              "records and report as a new variant")
    pr.add_argument("model_dir", help="a Hugging Face causal LM folder with the run's vocabulary")
    pr.add_argument("--run", required=True, help="the run folder (made by `kgtest run`)")
    pr.add_argument("--as", dest="name", default="external",
                    help="variant name in the records (default: external)")
    pr.add_argument("--probes", nargs="+", help="probe names (default: the run's probes)")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.set_defaults(func=cmd_probe)


def _print(args, result: dict, text: str) -> None:
    print(json.dumps(result) if args.json else text)


def cmd_export_lm_eval(args) -> int:
    from kgtest.interop.exports import export_lm_eval

    res = export_lm_eval(args.run_dir, args.out, name=args.name)
    lines = [f"wrote {len(res['tasks'])} lm-eval tasks (group {res['group']}) to {res['dir']}/:"]
    lines += [f"  {t}: {n} questions" for t, n in res["tasks"].items()]
    lines.append("run them as shown in " + str(Path(res["dir"]) / "README.md"))
    _print(args, res, "\n".join(lines))
    return 0


def cmd_export_forget_retain(args) -> int:
    from kgtest.interop.exports import export_forget_retain

    meta = export_forget_retain(args.run_dir, args.out, deep=args.deep)
    rows = ", ".join(f"{k} {n}" for k, n in meta["rows"].items())
    _print(args, meta, f"wrote {len(meta['files'])} files to {args.out}/ (rows: {rows})")
    return 0


def cmd_probe(args) -> int:
    from kgtest.interop.external import probe_model

    if not Path(args.model_dir).is_dir():
        raise InputError(f"{args.model_dir}: no such model folder")
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    res = probe_model(args.model_dir, args.run, args.name, probes=args.probes, log=log)
    text = (f"{res['variant']}: {res['rows']} rows ({res['gated_in']} gated in) added to "
            f"{Path(args.run) / 'records.jsonl'}")
    if res["summary"]:
        text = Path(res["summary"]).read_text() + "\n" + text + f"\nreport: {res['summary']}"
    _print(args, res, text)
    return 0
