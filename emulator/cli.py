"""The command line: `python -m emulator list | devices | describe WORKLOAD ... | run SCENARIO.yaml ... | sweep SWEEP.yaml
| search STUDY.yaml`.

User errors print one line and exit with code 2, Ctrl-C one line and code 130;
the workload suite is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import sys

from emulator.attention import ATTENTION_IMPLEMENTATIONS, DEFAULT_ATTENTION
from emulator.devices import DEFAULT_DEVICE
from emulator.errors import Interrupted, UserError, clip, excerpt

MAX_WORK = 5e7  # describe: op calls to cost (ops x calls); decode stages near it take tens of seconds


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message}")


def positive_number(text: str) -> float:
    """A finite number above zero (`1e9` allowed)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {excerpt(text)}")
    return value


def cmd_list(args) -> None:
    from workloads import WORKLOADS

    width = max(len(n) for n in WORKLOADS)
    klass = max(len(w.klass) for w in WORKLOADS.values())
    for w in WORKLOADS.values():
        print(f"{w.name:{width}s}  {w.klass:{klass}s}  {w.description}")


def cmd_devices(args) -> None:
    """The catalog, each device with where its kernel times come from by default."""
    from emulator.cost.costing import cost_source, kinds_text, source_text
    from emulator.devices import catalog

    rows = [{"name": d.name, "label": d.label, "kind": d.kind, "memory_GB": d.hbm_GB,
             "cost_source": cost_source(d.name)} for d in catalog().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    label = max(len(r["label"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}s}  {r['label']:{label}s}  {source_text(r['cost_source'])}")
        for line in kinds_text(r["cost_source"]).splitlines():
            print(f"{'':{width}s}    {line}")


def module_pipeline(args):
    """A one-stage Pipeline of a real PyTorch model lowered on fake tensors (`--module`, `--config`), at
    the size --height/--width (or --image-size) and --frames give, in pixels and frames (the class's
    default where not given), and --batch."""
    from emulator.pipeline import Pipeline, Stage
    from workloads.modules import load_config, module_graph, module_size

    if args.workload:
        raise UserError("give a workload or --module, not both")
    if not args.config:
        raise UserError("--module needs --config PRESET|FILE.json")
    knobs = [k for k in ("steps", "prompt_tokens", "output_tokens", "guidance", "guidance_mode", "dtype", "cache",
                         "cfg_steps") if getattr(args, k) is not None]
    if knobs:
        raise UserError(f"--module takes --batch, --height/--width or --image-size and --frames, "
                        f"not --{knobs[0].replace('_', '-')}")
    if args.image_size is not None and (args.height is not None or args.width is not None):
        raise UserError("give --image-size or --height/--width, not both")
    height = args.height if args.image_size is None else args.image_size
    width = args.width if args.image_size is None else args.image_size
    size = module_size(args.module, height, width, args.frames)  # an unknown class or bad size fails here
    load_config(args.module, args.config)  # a bad preset or file fails before torch is imported
    batch = args.batch or 1
    if batch < 1:
        raise UserError(f"--batch must be a positive integer, got {batch}")
    name = args.module.split(":")[-1]
    stage = Stage(name, f"{args.module} from {args.config}, lowered on fake tensors",
                  lambda b: module_graph(args.module, args.config, b, size.height, size.width, size.frames),
                  1, batch)
    knobs = {"config": args.config, "batch": batch}
    knobs.update({k: v for k, v in (("height", size.height), ("width", size.width), ("frames", size.frames))
                  if v is not None})
    return Pipeline(args.module, knobs, (stage,))


def cmd_describe(args) -> None:
    from emulator.cost import cost_model, runtime
    from emulator.cost.costing import cost_source
    from emulator.describe import check_work, format_text, report

    if args.module:
        pipeline = module_pipeline(args)
    elif not args.workload:
        raise UserError("describe needs a WORKLOAD (see `list`) or --module SPEC --config PRESET|FILE")
    else:
        from workloads import build

        knobs = {k: getattr(args, k) for k in ("batch", "image_size", "height", "width", "frames", "steps",
                                               "prompt_tokens", "output_tokens", "guidance", "guidance_mode", "dtype",
                                               "cache", "cfg_steps")}
        pipeline = build(args.workload, **knobs)
    run_as = runtime(args.runtime)
    check_work(pipeline, args.max_work)
    model = cost_model(args.device, args.attention, args.roofline)
    run_as.check(model)
    plan = None
    if args.parallel:
        from emulator.parallel.plan import parse_plan

        plan = parse_plan(args.parallel, tuple(s.name for s in pipeline.stages))
    r = report(pipeline, model, cost_source(args.device, args.roofline), run_as, plan)
    print(json.dumps(r, indent=2) if args.json else format_text(r))


def cmd_run(args) -> None:
    from pathlib import Path

    from emulator.cost.costing import source_text
    from emulator.engine.scenario import check_seed, load_scenario
    from emulator.engine.simulate import comparison_table, run_scenario

    seed = None if args.seed is None else check_seed(args.seed, "--seed")
    scenario = load_scenario(args.scenario)
    out = Path(args.out or scenario.output.dir or Path("results") / scenario.name)
    progress = sys.stderr.isatty()
    summaries = run_scenario(scenario, out, seed, args.trace or scenario.output.trace, progress, args.scenario)
    print(f"{scenario.name}: {len(summaries)} policies on {scenario.device} ({scenario.attention} attention, "
          f"{scenario.runtime} runtime), "
          f"seed {summaries[0]['seed']}; results in {out}/")
    for source in summaries[0]["cost_sources"]:
        print(f"kernel times on {source['device']}: {source_text(source)}")
    print(comparison_table(summaries))


def cmd_sweep(args) -> None:
    from pathlib import Path

    from emulator.engine.sweep import execute, load_sweep, read_table

    spec, base, base_dir = load_sweep(args.sweep)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    axes = list(spec.axes)
    for axis in args.heatmap or ():
        if axis not in axes:
            raise UserError(f"--heatmap {axis!r} is not an axis of {args.sweep}; axes: {', '.join(axes)}")
    out = Path(args.out or Path("results") / spec.name)
    results = execute(spec, base, base_dir, out, args.workers, args.ray, progress=sys.stderr.isatty())
    table = read_table(results)
    failed = int((table["error"] != "").sum())
    x_axis, y_axis = (args.heatmap or (axes + [None])[:2])[:2] if len(axes) > 1 or args.heatmap else (None, None)
    try:
        from emulator.engine.sweep_plots import plot

        plots = plot(table, out, x_axis, y_axis, args.metric)
    except ImportError:
        plots = []
        print("matplotlib is not installed: no plots (pip install -e '.[experiments]')", file=sys.stderr)
    print(f"{spec.name}: {table['run_id'].nunique()} runs, {len(table)} rows ({failed} failed) in {results}"
          + (f"; plots: {', '.join(p.name for p in plots)}" if plots else ""))


def cmd_search(args) -> None:
    from pathlib import Path

    from emulator.engine.search import load_study, search
    from emulator.engine.search_report import table, write

    study, base, base_dir = load_study(args.study)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    out = Path(args.out or Path("results") / study.name)
    outcome = search(study, base, base_dir, args.workers, args.ray, progress=True, exhaustive=args.exhaustive)
    files = write(outcome, out)
    try:
        from emulator.engine.search_plots import plot

        files.append(plot(outcome, out))
    except ImportError:
        print("matplotlib is not installed: no pareto.png (pip install -e '.[experiments]')", file=sys.stderr)
    print(table(outcome))
    rate = outcome.max_rate
    if rate:
        print(f"max rate of the cheapest: {rate['rate']:.4g} on {rate['axis']}"
              + (" (the highest tried)" if rate["bounded_by_high"] else ""))
    print(f"{study.name}: {outcome.simulations} simulations of the full grid's {outcome.grid_size}; "
          f"files: {', '.join(str(f) for f in files)}")


def parser() -> Parser:
    p = Parser(prog="emulator", description="Emulator of multi-modal generative AI inference.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="the workloads of the suite").set_defaults(run=cmd_list)
    v = sub.add_parser("devices", help="the device catalog, and where each device's kernel times come from")
    v.add_argument("--json", action="store_true", help="print one JSON array")
    v.set_defaults(run=cmd_devices)
    d = sub.add_parser("describe", help="FLOPs, bytes, parameters and attention shapes of one request")
    d.add_argument("workload", nargs="?", help="a workload of the suite (see `list`)")
    d.add_argument("--module", help="instead of a workload, a real model: diffusers:CLASS or transformers:CLASS "
                   "(UNet2DConditionModel, FluxTransformer2DModel, WanTransformer3DModel, AutoencoderKLWan, ...; "
                   "a wrong one lists them; needs torch and diffusers/transformers)")
    d.add_argument("--config", help="with --module: a preset (sd-v1.5-unet, flux.1-dev, sd3.5-large, wan2.1-t2v-14b, "
                   "hunyuan-video, ...; a wrong one lists them) or a JSON file of constructor keywords")
    d.add_argument("--batch", type=int, help="images, videos or sequences per request")
    d.add_argument("--image-size", type=int, help="output side in pixels (square-output models)")
    d.add_argument("--height", type=int, help="output height in pixels (models with non-square outputs)")
    d.add_argument("--width", type=int, help="output width in pixels")
    d.add_argument("--frames", type=int, help="video frames")
    d.add_argument("--steps", type=int, help="denoising / parallel decoding steps of the first generator stage")
    d.add_argument("--prompt-tokens", type=int, help="text tokens")
    d.add_argument("--output-tokens", type=int, help="generated tokens (LLM)")
    d.add_argument("--guidance", action=argparse.BooleanOptionalAction, default=None,
                   help="classifier-free guidance (doubles the batch of guided stages)")
    d.add_argument("--guidance-mode", help="how guidance runs: batched (one call at twice the batch), two-calls, "
                   "distilled (one pass) or off, where the model takes it")
    d.add_argument("--dtype", help="fp16 (default), bf16, fp32, fp8")
    d.add_argument("--cache", help="step caching of the denoiser: a preset (teacache-flux-0.4, fbcache-wan-0.06, "
                   "deepcache-3, ...; a wrong one lists them), share=S or interval=N [,prefix=K], or list:full,skip,...")
    d.add_argument("--cfg-steps", help="classifier-free guidance only on these steps: ranges START:END, e.g. 0:10,40:50")
    d.add_argument("--device", default=DEFAULT_DEVICE,
                   help=f"catalog device (its shipped profile) or a profile file; default {DEFAULT_DEVICE}")
    d.add_argument("--attention", default=DEFAULT_ATTENTION, metavar="NAME",
                   help="attention implementation to cost: " + ", ".join(ATTENTION_IMPLEMENTATIONS)
                   + " (those the device's profile has); default: the profile's default per shape class")
    d.add_argument("--roofline", action="store_true", help="cost by the device's datasheet roofline")
    d.add_argument("--runtime", default="eager", help="how the model is run: eager (the host dispatches op by op, "
                   "the default) or cuda-graphs (one graph launch per call; not on a CPU)")
    d.add_argument("--parallel", metavar="STAGE:DEGREE=N,...", help="also cost one rank of a multi-GPU plan "
                   "per stage, e.g. transformer:ulysses=4,cfg=2 (degrees ulysses, ring, cfg, tensor, pipefusion "
                   "with patches=M, spatial for a VAE decoder; stages separated by ';')")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.add_argument("--max-work", type=positive_number, default=MAX_WORK,
                   help=f"refuse requests whose costing takes more op calls (ops x calls) than this; default {MAX_WORK:g}")
    d.set_defaults(run=cmd_describe)
    r = sub.add_parser("run", help="simulate a scenario's traffic under each of its policies")
    r.add_argument("scenario", help="scenario YAML file (see configs/)")
    r.add_argument("--out", help="results directory (default: the scenario's, else results/<name>/)")
    r.add_argument("--seed", help="override the scenario's seed (0 to 2**32 - 1)")
    r.add_argument("--trace", action="store_true", help="also write a Chrome/Perfetto trace.json per policy")
    r.set_defaults(run=cmd_run, interrupted="no results written")
    w = sub.add_parser("sweep", help="run a design-space sweep of scenarios into one table")
    w.add_argument("sweep", help="sweep YAML file (see configs/sweep-*.yaml)")
    w.add_argument("--workers", type=int, help="local processes (default: all cores)")
    w.add_argument("--ray", help="run as Ray tasks: auto (a running cluster, else a local one) or an ADDRESS")
    w.add_argument("--out", help="results directory (default results/<sweep name>/); an existing one resumes")
    w.add_argument("--heatmap", nargs=2, metavar=("X_AXIS", "Y_AXIS"), help="axes of heatmap.png (default: "
                   "the first two)")
    w.add_argument("--metric", default="latency_p99_s", help="metric of heatmap.png (default latency_p99_s)")
    w.set_defaults(run=cmd_sweep, interrupted="finished runs are kept in results.csv; run again to resume")
    q = sub.add_parser("search", help="the cheapest configuration meeting a p99 SLO at a load (pruned search)")
    q.add_argument("study", help="search study YAML file (see configs/search-*.yaml)")
    q.add_argument("--workers", type=int, help="local processes (default: all cores)")
    q.add_argument("--ray", help="run as Ray tasks: auto (a running cluster, else a local one) or an ADDRESS")
    q.add_argument("--out", help="results directory (default results/<study name>/)")
    q.add_argument("--exhaustive", action="store_true", help="run the full grid instead of pruning (to check it)")
    q.set_defaults(run=cmd_search)
    return p


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = parser().parse_args(argv)
        args.run(args)
    except Interrupted as e:  # Ctrl-C after saving what could be kept (a sweep's finished rows): the line says what
        print(str(e), file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; `run` has removed its staging folder
        what = getattr(args, "interrupted", None)
        print(("\n" if sys.stderr.isatty() else "") + "interrupted" + (f": {what}" if what else ""), file=sys.stderr)
        return 130
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe
        return 0
    except OSError as e:  # the machine refused a file: say which, in one line
        where = f": {clip(str(e.filename))}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    return 0
