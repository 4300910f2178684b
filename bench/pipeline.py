"""Speed and memory of the pipeline against bare ONNX Runtime and rembg.remove, same model.

    .venv/bin/python bench/pipeline.py [--repeats 5] [--threads 2] [--matting] [--arena]

In one process and one run, on the same weights file, with ``threads`` intra-op threads
everywhere, on the same inputs (a 12 MP JPEG made by upscaling a fixture, and a ~1 MP fixture):

  (a)  bare inference on the worker's own session (the serving graph derived from the file,
       ``removal/pipeline/graph.py``, with ``segment.session_options``): ``session.run`` on a
       prepared 1x3x1024x1024 float32 tensor. The floor for (c): what (c)/(a) is about;
  (a0) bare inference on the weights file as shipped, ORT's default session options: what
       onnxruntime gives anyone out of the box;
  (b)  ``rembg.remove(jpeg_bytes, session=new_session("dis_custom", model_path=<the file>))``
       -> PNG bytes: rembg exactly as a user runs it by hand, its own session on the same file;
  (b') ``rembg.remove`` around the worker's session, to split (b)/(c) into what the serving
       graph gains and what our pre/post-processing gains;
  (c)  ``removal.pipeline.cutout.cut_out`` (default options: crop on, refine on) -> PNG bytes.

Rounds are interleaved (a0, a, b, b', c; each round starts one later) so load from other
processes on a shared machine hits all alike; medians are printed with the ratios (c)/(a) and
(b)/(c), in wall seconds (what the targets are about) and in process CPU seconds (less
disturbed by others).

Then, each in a fresh subprocess so the figure is the kernel's honest high-water mark (VmHWM)
of a worker-like process: the peak RSS while processing a 4096x4096 JPEG (load the model,
process twice). ``--arena`` also measures ORT's CPU memory arena off and the memory pattern
on, and times one bare inference per configuration (the file as shipped with ORT's defaults,
the serving graph with the arena off / on / on plus the memory pattern), interleaved;
``--matting`` times alpha matting on the ~1 MP input.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES  # noqa: E402 - bench/ is not a package; puts the project on sys.path

MODEL = Path.home() / ".cache" / "quickbg" / "models" / "isnet-general-use-fp16.onnx"
TARGETS = {"12mp": (1.15, 1.6), "1mp": (1.05, None)}
RSS_TARGET_MB = 1.2 * 1024


def make_inputs(folder: Path) -> dict[str, bytes]:
    """12 MP: girl-1 upscaled to 4000x3000 (JPEG q90). ~1 MP: cloth-1 (739x1134) as it is."""
    from PIL import Image

    big = Image.open(FIXTURES / "girl-1.jpg").convert("RGB")
    big = big.resize((4000, 3000), Image.Resampling.BICUBIC)
    path = folder / "girl-12mp.jpg"
    big.save(path, format="JPEG", quality=90)
    return {"12mp": path.read_bytes(), "1mp": (FIXTURES / "cloth-1.jpg").read_bytes()}


CPU_TIMES: list[float] = []  # process CPU seconds of the last ``timed`` calls


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """Wall seconds of one call; its process CPU seconds (all threads) go to ``CPU_TIMES``."""
    cpu, start = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    CPU_TIMES.append(time.process_time() - cpu)
    return time.perf_counter() - start, out


def ort_defaults(threads: int):
    """ONNX Runtime's default session options, but for the thread count all contenders share."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return opts


def rembg_own_session(model: Path, threads: int):
    """rembg's session for the file, made the way rembg documents for a custom ISNet file."""
    import os

    os.environ["U2NET_HOME"] = str(model.parent)  # rembg only opens models under its home
    from rembg import new_session

    return new_session("dis_custom", model_path=str(model), sess_opts=ort_defaults(threads))


def require_serving_graph(segmenter) -> None:
    """(a), (b') and (c) are labelled as running the serving graph: make sure they do."""
    meta = segmenter.inner.get_modelmeta().custom_metadata_map
    if "quickbg.serving_graph" not in meta:
        sys.exit("The worker's session is not running the serving graph (see the log).")


def bench_session_options(model: Path, threads: int, repeats: int) -> dict:
    """Median seconds of one bare inference per ORT configuration, runs interleaved."""
    import numpy as np
    import onnxruntime as ort

    from removal.pipeline.graph import ensure_serving_graph
    from removal.pipeline.segment import session_options

    serving = str(ensure_serving_graph(model))
    configs = {
        "file as shipped, ORT defaults (arena on, pattern on)": (str(model), ort_defaults(threads)),
        "serving graph, arena off, pattern off": (
            serving, session_options(threads, mem_arena=False)),
        "serving graph, arena on, pattern off (the worker)": (
            serving, session_options(threads)),
        "serving graph, arena on, pattern on": (
            serving, session_options(threads, mem_pattern=True)),
    }
    sessions = {k: ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                for k, (path, opts) in configs.items()}
    tensor = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for session in sessions.values():
        session.run(None, {"input": tensor})
    order = list(sessions)
    for round_ in range(repeats):
        for key in order[round_ % len(order):] + order[:round_ % len(order)]:
            times[key].append(timed(sessions[key].run, None, {"input": tensor})[0])
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


def bench_speed(model: Path, threads: int, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    from rembg import remove

    from removal.pipeline.cutout import cut_out
    from removal.pipeline.options import Options
    from removal.pipeline.segment import Segmenter
    from removal.pipeline.validate import Limits

    segmenter = Segmenter(model, threads)
    require_serving_graph(segmenter)
    shipped = ort.InferenceSession(str(model), ort_defaults(threads),
                                   providers=["CPUExecutionProvider"])
    rembg_session = rembg_own_session(model, threads)
    tensor = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
    feed = {shipped.get_inputs()[0].name: tensor}
    calls = {
        "a0": lambda data: shipped.run(None, feed),
        "a": lambda data: segmenter.run(tensor),
        "b": lambda data: remove(data, session=rembg_session),
        "b'": lambda data: remove(data, session=segmenter.session),
        "c": lambda data: cut_out(data, segmenter=segmenter, options=Options(),
                                  limits=Limits(max_bytes=1 << 30)),
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="quickbg-bench-") as tmp:
        inputs = make_inputs(Path(tmp))
        for label, data in inputs.items():
            runs = {k: [] for k in calls}
            cpu = {k: [] for k in calls}
            stages: list[dict] = []
            for call in calls.values():
                call(data)  # warm-up per input, not counted: first calls fault memory in
            order = list(calls)
            for round_ in range(repeats):
                # rotate who goes first, so none always follows the same neighbour
                for key in order[round_ % len(order):] + order[:round_ % len(order)]:
                    seconds, out = timed(calls[key], data)
                    runs[key].append(seconds)
                    cpu[key].append(CPU_TIMES[-1])
                    if key == "c":
                        result = out
                        stages.append(result.metrics["stage_timings"])
            median = {k: statistics.median(v) for k, v in runs.items()}
            cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
            results[label] = {
                "bytes": len(data),
                "median_s": {k: round(v, 3) for k, v in median.items()},
                "all_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
                "c_over_a": round(median["c"] / median["a"], 3),
                "c_over_a0": round(median["c"] / median["a0"], 3),
                "b_over_c": round(median["b"] / median["c"], 3),
                "b_prime_over_c": round(median["b'"] / median["c"], 3),
                "cpu_median_s": {k: round(v, 3) for k, v in cpu_median.items()},
                "cpu_c_over_a": round(cpu_median["c"] / cpu_median["a"], 3),
                "cpu_b_over_c": round(cpu_median["b"] / cpu_median["c"], 3),
                # Paired per round: what each adds to the model run it was interleaved with.
                "overhead_s": {
                    "b": round(statistics.median(
                        x - y for x, y in zip(runs["b"], runs["a0"], strict=True)), 3),
                    "c": round(statistics.median(
                        x - y for x, y in zip(runs["c"], runs["a"], strict=True)), 3),
                },
                "c_stages_median": {
                    k: round(statistics.median(s[k] for s in stages), 4) for k in stages[0]
                },
                "output": f"{result.width}x{result.height}, {len(result.data)} bytes",
            }
    return results


def bench_matting(model: Path, threads: int) -> dict:
    from removal.pipeline.cutout import cut_out
    from removal.pipeline.options import Options
    from removal.pipeline.segment import get_segmenter
    from removal.pipeline.validate import Limits

    segmenter = get_segmenter(model, threads)
    data = (FIXTURES / "cloth-1.jpg").read_bytes()
    seconds, result = timed(lambda: cut_out(
        data, segmenter=segmenter, options=Options(alpha_matting=True), limits=Limits()
    ))
    return {"seconds": round(seconds, 3), "stages": result.metrics["stage_timings"]}


def rss_child(model: str, threads: int, arena: bool, size: int, pattern: bool = False) -> None:
    """Run in a subprocess: a worker's life for one big job. Prints JSON."""
    import numpy as np
    from PIL import Image

    from removal.pipeline.cutout import cut_out
    from removal.pipeline.memory import PeakMemory
    from removal.pipeline.options import Options
    from removal.pipeline.segment import Segmenter
    from removal.pipeline.validate import Limits

    rng = np.random.default_rng(1)
    small = Image.open(FIXTURES / "animal-2.jpg").convert("RGB").resize((size, size))
    noisy = np.clip(np.asarray(small, dtype=np.int16) + rng.integers(-8, 8, (size, size, 3)),
                    0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=92)
    data = buffer.getvalue()
    del small, noisy, buffer

    with PeakMemory() as whole:
        segmenter = Segmenter(model, threads, mem_arena=arena, mem_pattern=pattern)
        loaded = whole.read()
        times = []
        for _ in range(2):
            seconds, result = timed(lambda: cut_out(
                data, segmenter=segmenter, options=Options(), limits=Limits(max_bytes=1 << 30)
            ))
            times.append(round(seconds, 3))
    import psutil

    print(json.dumps({
        "size": f"{size}x{size}", "arena": arena, "input_bytes": len(data),
        "mem_pattern": pattern, "rss_after_model_load_mb": loaded, "peak_rss_mb": whole.mb,
        "rss_between_jobs_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "per_task_reset": whole.per_task, "seconds": times,
        "output": f"{result.width}x{result.height}",
    }))


def measure_rss(model: Path, threads: int, arena: bool, size: int = 4096,
                pattern: bool = False) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--rss-child", "--model", str(model), "--threads",
         str(threads), "--size", str(size)] + (["--arena-off"] if not arena else [])
        + (["--pattern-on"] if pattern else []),
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(value: float, limit: float, lower_is_better: bool = True) -> str:
    ok = value <= limit if lower_is_better else value >= limit
    return "meets" if ok else "MISSES"


def report(speed: dict, rss: dict) -> None:
    head = ("(a0) ORT as shipped", "(a) bare ORT, ours", "(b) rembg.remove", "(b') rembg, our ORT",
            "(c) ours", "(c)/(a)", "(b)/(c)")
    for title, field in (("median seconds", "median_s"),
                         ("median CPU seconds (both threads; steadier on a shared machine)",
                          "cpu_median_s")):
        print(f"\n{title}\n         " + "  ".join(f"{h:>19}" for h in head))
        for label, r in speed.items():
            m = r[field]
            ratios = ((r["c_over_a"], r["b_over_c"]) if field == "median_s"
                      else (r["cpu_c_over_a"], r["cpu_b_over_c"]))
            cells = [m["a0"], m["a"], m["b"], m["b'"], m["c"], *ratios]
            print(f"  {label:>5}  " + "  ".join(f"{v:>19.3f}" for v in cells))
    print()
    for label, r in speed.items():
        ca_target, bc_target = TARGETS[label]
        line = f"  {label}: (c)/(a) {r['c_over_a']} vs <= {ca_target}: "
        line += verdict(r["c_over_a"], ca_target)
        if bc_target:
            line += f"; (b)/(c) {r['b_over_c']} vs >= {bc_target}: "
            line += verdict(r["b_over_c"], bc_target, lower_is_better=False)
        print(line)
        print(f"    (c)/(a0) {r['c_over_a0']}; (b')/(c) {r['b_prime_over_c']} (rembg around "
              f"our session: what our pre/post-processing alone gains)")
        print(f"    beyond the model run (median of paired differences, wall s): "
              f"rembg.remove +{r['overhead_s']['b']} over (a0), ours +{r['overhead_s']['c']} "
              f"over (a); ours non-inference stages sum to "
              f"{sum(v for k, v in r['c_stages_median'].items() if k != 'inference'):.3f} s")
        print(f"    ours per stage (median s): {r['c_stages_median']}")
        print(f"    all runs: {r['all_s']}; output {r['output']}")
    print(f"\npeak RSS, worker-like process, 4096x4096 JPEG: {rss['peak_rss_mb']:.0f} MB "
          f"(target <= {RSS_TARGET_MB:.0f} MB: {verdict(rss['peak_rss_mb'], RSS_TARGET_MB)}); "
          f"after model load {rss['rss_after_model_load_mb']:.0f} MB, "
          f"between jobs {rss['rss_between_jobs_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--matting", action="store_true", help="also time alpha matting (1 MP)")
    parser.add_argument("--arena", action="store_true",
                        help="also measure the memory arena off and the memory pattern on")
    parser.add_argument("--no-speed", action="store_true", help="memory only")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arena-off", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pattern-on", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(str(args.model), args.threads, not args.arena_off, args.size, args.pattern_on)
        return

    import cv2

    cv2.setNumThreads(args.threads)
    print(f"model {args.model.name}, threads {args.threads}, repeats {args.repeats}")
    rss = measure_rss(args.model, args.threads, arena=True)
    print("memory (arena on, pattern off: the worker's settings):", json.dumps(rss))
    if args.arena:
        print("memory (arena off):", json.dumps(measure_rss(args.model, args.threads, arena=False)))
        print("memory (arena on, memory pattern on):",
              json.dumps(measure_rss(args.model, args.threads, arena=True, pattern=True)))
        print("median seconds per bare inference, interleaved:")
        for config, seconds in bench_session_options(args.model, args.threads,
                                                     args.repeats).items():
            print(f"  {seconds:7.3f}  {config}")
    speed = {} if args.no_speed else bench_speed(args.model, args.threads, args.repeats)
    if args.matting:
        print("alpha matting, ~1 MP:", json.dumps(bench_matting(args.model, args.threads)))
    if speed:
        report(speed, rss)


if __name__ == "__main__":
    main()
