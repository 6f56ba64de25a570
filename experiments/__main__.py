"""`python -m experiments list | NAME | all [--device NAME|PROFILE.json] [--out DIR]`."""

from __future__ import annotations

import sys
from pathlib import Path

from emulator.cli import Parser
from emulator.devices import DEFAULT_DEVICE
from emulator.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from experiments import EXPERIMENTS

    p = Parser(prog="experiments", description="Reproduce the characterization study with the emulator.")
    p.add_argument("name", help="list, all, or one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--device", default=DEFAULT_DEVICE,
                   help=f"catalog device (its shipped profile) or a profile file; default {DEFAULT_DEVICE}")
    p.add_argument("--out", help="output directory (default results/experiments/)")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes of the roofline experiment (default 1 4 16)")
    try:
        args = p.parse_args(argv)
        if args.name == "list":
            for name, m in EXPERIMENTS.items():
                print(f"{name:15s} {m.TITLE}")
            return 0
        if args.name != "all" and args.name not in EXPERIMENTS:
            raise UserError(f"unknown experiment {args.name!r}; choose list, all, or one of: {', '.join(EXPERIMENTS)}")
        from emulator.cost import cost_model

        cost_model(args.device)  # a bad device or profile fails here, in one line
        out = Path(args.out or "results/experiments")
        out.mkdir(parents=True, exist_ok=True)
        if args.name == "all":
            from experiments.report import run_all

            results = run_all(EXPERIMENTS, args.device, out)
            print(f"{len(results)} experiments; report in {out / 'report.md'}")
        elif args.name == "roofline" and args.batch:
            if min(args.batch) < 1:
                raise UserError("--batch must be positive integers")
            results = [EXPERIMENTS["roofline"].run(args.device, out, tuple(args.batch))]
        else:
            results = [EXPERIMENTS[args.name].run(args.device, out)]
        for r in results:
            print(f"{r.name}: {r.finding}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
