"""`python -m calibration run | report | convert | derive | import-public | import-collectives | validate | concurrency`: measure, check and derive kernel-cost profiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calibration.cpu.allocator import CHOICES as ALLOCATOR_STATES
from emulator.errors import UserError


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def add_validate(sub) -> None:
    """The `validate` subcommand's arguments."""
    v = sub.add_parser("validate", help="time real PyTorch models and compare with the emulator")
    v.add_argument("--device", choices=("cpu", "cuda"), required=True)
    v.add_argument("--profile", required=True, help="profile file or catalog device to predict with")
    v.add_argument("--out", type=Path, required=True, help="CSV to write (a directory: validation.csv in it)")
    v.add_argument("--models", nargs="+", help="some of: sd-unet sd-vae-decoder unet3d llama2-7b-prefill "
                   "llama2-7b-decode (default all)")
    v.add_argument("--isolated", action="store_true",
                   help="also time each model's kernels one by one right after it: is an error the kernels "
                        "composing differently in the model, or the profile?")
    v.add_argument("--allocator", choices=ALLOCATOR_STATES,
                   help="on a CPU: the allocator state to time the models in (default: the profile's)")
    v.add_argument("--attention", choices=("flash", "baseline"),
                   help="validate one attention implementation only (default both)")
    v.add_argument("--rounds", type=int, default=1,
                   help="time every case this many times, round-robin, and keep the median (default 1)")
    ip = sub.add_parser("import-public", help="a GPU's profile from aiconfigurator's measured kernel tables "
                        "(needs the `public` extra)")
    ip.add_argument("--system", required=True, help="aiconfigurator system (h100_sxm, b200_sxm, ...) or all")
    ip.add_argument("--framework", help="framework whose tables to read (default: vllm, else the one with most)")
    ip.add_argument("--data-dir", type=Path, help="the wheel's aiconfigurator_core/systems/data (default: installed)")
    ip.add_argument("--out", type=Path, help="profile file to write (a folder with --system all; default: "
                    "calibration/profiles/<the device's file>)")

    ic = sub.add_parser("import-collectives", help="a GPU's NCCL collective latencies from aiconfigurator's "
                        "measured tables (needs the `public` extra)")
    ic.add_argument("--system", required=True, help="aiconfigurator system (h100_sxm, b200_sxm, ...) or all")
    ic.add_argument("--data-dir", type=Path, help="the wheel's aiconfigurator_core/systems/data (default: installed)")
    ic.add_argument("--out", type=Path, help="folder to write <device>.json to (default: "
                    "calibration/profiles/collectives)")


def parser() -> Parser:
    p = Parser(prog="calibration", description="Kernel calibration for the emulator.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    r = sub.add_parser("run", help="benchmark every kernel kind on this device and write a profile")
    r.add_argument("--device", choices=("cpu", "cuda"), required=True)
    r.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="default: fp16 on cuda, fp32 on cpu")
    r.add_argument("--quick", action="store_true", help="a small grid and shorter timing")
    r.add_argument("--workloads", nargs="*", default=[], metavar="NAME", help="also measure these workloads' shapes")
    r.add_argument("--out", required=True, type=Path, help="profile file to write")
    r.add_argument("--device-name", help="catalog device the profile describes (default: detected)")
    r.add_argument("--max-kernel-s", type=float, help="skip kernels estimated slower than this per run")
    r.add_argument("--passes", type=int, default=1,
                   help="measure every kernel this many times, in shuffled orders, and keep the median "
                        "(for machines whose speed drifts, e.g. shared virtual machines)")
    r.add_argument("--validation", action="store_true",
                   help="also measure the kernel shapes of the real models `validate` times on this device")
    r.add_argument("--max-passes", type=int, default=None,
                   help="then measure again, in extra passes up to this many in all, the kernels whose pass "
                        "medians disagree by more than 8%% (default: no extra passes)")
    r.add_argument("--allocator", choices=ALLOCATOR_STATES, default=None,
                   help="on a CPU: keep freed memory for reuse (default), or glibc's default, whose fresh pages "
                        "make big kernels' times depend on what ran before (calibration/cpu/allocator.py)")
    rep = sub.add_parser("report", help="held-out prediction error of a profile, per kind")
    rep.add_argument("profile")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--folds", type=int, default=1, help="pool the errors of this many random fifths")
    rep.add_argument("--against", metavar="MEASURED.json",
                     help="instead: the profile's error at the points another profile measured")
    conv = sub.add_parser("convert", help="rewrite a version-1 profile as version 2 (in place unless --out)")
    conv.add_argument("profile", type=Path)
    conv.add_argument("--out", type=Path, help="profile file to write (its raw passes go beside it)")
    t = sub.add_parser("transfer", help="a profile for a GPU with datasheet facts only, from the measured H100")
    t.add_argument("--device", required=True, help="catalog device to write a profile for")
    t.add_argument("--out", type=Path, help="profile file (default calibration/profiles/DEVICE.json)")
    d = sub.add_parser("derive", help="build the A100/H100 profiles from public measurements")
    d.add_argument("--out-dir", type=Path, default=Path(__file__).with_name("profiles"))
    add_validate(sub)
    c = sub.add_parser("concurrency", help="kernel pairs on two CUDA streams against each alone")
    c.add_argument("--out", type=Path, required=True, help="CSV to write")
    return p


def imported(args) -> list:
    """The files `import-public` (kernel profiles) or `import-collectives` (NCCL tables) wrote."""
    if args.command == "import-collectives":
        from calibration.public_collectives import import_and_write as import_collectives

        return import_collectives(args.system, args.data_dir, args.out)
    from calibration.public_import import import_and_write

    return import_and_write(args.system, args.framework, args.data_dir, args.out)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.command == "run":
            from calibration.run import run

            dtype = args.dtype or ("fp16" if args.device == "cuda" else "fp32")
            if args.workloads:
                import workloads

                for name in args.workloads:
                    workloads.get(name)
            run(args.device, dtype, args.quick, args.workloads, args.out, args.device_name, args.max_kernel_s,
                args.passes, args.max_passes, args.validation, args.allocator)
        elif args.command == "report":
            from calibration.report import against, report

            if args.folds < 1:
                raise UserError(f"--folds: {args.folds}; give 1 or more")
            if args.against:
                against(args.profile, args.against)
            else:
                report(args.profile, args.seed, args.folds)
        elif args.command == "validate":
            from calibration.validate import MODELS, validate

            models = tuple(args.models or MODELS)
            unknown = set(models) - set(MODELS)
            if unknown:
                raise UserError(f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
            out = args.out / "validation.csv" if args.out.is_dir() or not args.out.suffix else args.out
            if args.rounds < 1:
                raise UserError(f"--rounds: {args.rounds}; give 1 or more")
            attentions = (args.attention,) if args.attention else ("flash", "baseline")
            validate(args.device, args.profile, out, models, args.isolated, args.rounds, args.allocator, attentions)
        elif args.command == "convert":
            from calibration.convert import convert

            print(f"wrote {convert(args.profile, args.out)}")
        elif args.command in ("import-public", "import-collectives"):
            for path in imported(args):
                print(f"wrote {path}")
        elif args.command == "transfer":
            from calibration.transfer import transfer_and_write

            print(f"wrote {transfer_and_write(args.device, args.out)}")
        elif args.command == "concurrency":
            from calibration.concurrency import concurrency

            concurrency(args.out)
        else:
            from calibration.derive import derive_all

            derive_all(args.out_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
