"""Quality and speed of every installed model, side by side.

    .venv/bin/python bench/models.py [--repeats 3] [--threads 2] [--references DIR]
                                     [--models a,b] [--models-dir DIR]

For each model of the catalogue (``removal/modelstore.py``) whose file is in the models folder
(``QUICKBG_MODELS_DIR``, or ``--models-dir``; ``--models`` narrows the list), in a fresh
subprocess each (so the peak RSS is that model's alone, the kernel's ``VmHWM``):

* load the model exactly as a worker does (``pipeline.sessions.new_model``: ISNet's serving
  graph, or rembg's session on our ORT settings), warm it up once on the 1 MP input;
* time the whole pipeline (``cutout.cut_out``, default options) per image at ~1 MP (fixture
  ``cloth-1.jpg``, 739x1134) and at 12 MP (``girl-1.jpg`` upscaled to 4000x3000): the median
  of ``--repeats`` runs, wall seconds;
* the mask of every fixture image (``cut_out`` with ``channels=alpha``, no crop) against the
  references: ``--references DIR`` holds one grey-scale mask per fixture (``car-1.png`` for
  ``car-1.jpg``...); without it, the first model listed (the default model when installed) is
  the reference for the others. IoU of the masks thresholded at 50 %, and MAE of the alpha in
  [0, 1], averaged over the fixtures;
* the peak RSS of the process over all of it.

It runs every model it finds: on these machines the two ISNet files; where more are installed,
those too (a 1 GB BiRefNet needs several GB of memory and minutes per 12 MP image).
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
from common import FIXTURES, ROOT, models_dir  # noqa: E402 - bench/ is not a package

QUALITY_INPUTS = ("car-1.jpg", "animal-2.jpg", "girl-1.jpg", "cloth-1.jpg")


def make_12mp(folder: Path) -> Path:
    from PIL import Image

    big = Image.open(FIXTURES / "girl-1.jpg").convert("RGB")
    big = big.resize((4000, 3000), Image.Resampling.BICUBIC)
    path = folder / "girl-12mp.jpg"
    big.save(path, format="JPEG", quality=90)
    return path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, folder: str, threads: int, repeats: int, big: str, masks_out: str) -> dict:
    """Run in the child: everything about one model; masks saved as PNGs in ``masks_out``."""
    import numpy as np
    from PIL import Image

    from removal.pipeline.cutout import cut_out
    from removal.pipeline.options import Options
    from removal.pipeline.sessions import new_model
    from removal.pipeline.validate import Limits

    limits = Limits(max_bytes=1 << 30, max_dimension=10000)
    start = time.perf_counter()
    model = new_model(name, folder, threads)
    load = time.perf_counter() - start
    inputs = {"1mp": (FIXTURES / "cloth-1.jpg").read_bytes(), "12mp": Path(big).read_bytes()}
    cut_out(inputs["1mp"], segmenter=model, options=Options(), limits=limits)  # warm-up
    times = {}
    for label, data in inputs.items():
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            cut_out(data, segmenter=model, options=Options(), limits=limits)
            runs.append(time.perf_counter() - t)
        times[label] = statistics.median(runs)
    alpha_only = Options.parse({"channels": "alpha", "crop": "false", "refine": "false"})
    for fixture in QUALITY_INPUTS:
        result = cut_out((FIXTURES / fixture).read_bytes(), segmenter=model, options=alpha_only,
                         limits=limits)
        mask = np.asarray(Image.open(io.BytesIO(result.data)).convert("L"))
        Image.fromarray(mask).save(Path(masks_out) / f"{Path(fixture).stem}.png")
    return {"model": name, "load_s": load, "times": times, "peak_rss_mb": peak_rss_mb()}


def compare(masks: Path, references: Path) -> tuple[float, float]:
    """Mean IoU (at 50 %) and mean absolute error of the alpha, over the fixtures."""
    import numpy as np
    from PIL import Image

    ious, maes = [], []
    for fixture in QUALITY_INPUTS:
        stem = Path(fixture).stem
        ours = np.asarray(Image.open(masks / f"{stem}.png").convert("L"), dtype=np.float32) / 255
        ref_image = Image.open(references / f"{stem}.png").convert("L")
        if ref_image.size != (ours.shape[1], ours.shape[0]):
            ref_image = ref_image.resize((ours.shape[1], ours.shape[0]))
        ref = np.asarray(ref_image, dtype=np.float32) / 255
        a, b = ours > 0.5, ref > 0.5
        union = (a | b).sum()
        ious.append(float((a & b).sum() / union) if union else 1.0)
        maes.append(float(np.abs(ours - ref).mean()))
    return statistics.mean(ious), statistics.mean(maes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--references", type=Path, default=None,
                        help="Folder of reference masks, one <fixture stem>.png per fixture.")
    parser.add_argument("--models", default="", help="Comma-separated subset (default: all "
                        "installed).")
    parser.add_argument("--models-dir", default=models_dir())
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # name, 12 MP input, masks folder, (unused)
        name, big, masks_out, _ = args.child
        print(json.dumps(measure(name, args.models_dir, args.threads, args.repeats, big,
                                 masks_out)))
        return

    from removal import modelstore

    found = modelstore.installed(args.models_dir)
    default = modelstore.DEFAULT_MODEL
    found.sort(key=lambda name: name != default)
    if args.models:
        wanted = [n.strip() for n in args.models.split(",") if n.strip()]
        found = [n for n in wanted if n in found]
    if not found:
        sys.exit(f"No model is installed in {args.models_dir}: run `python manage.py fetch_model "
                 "--model NAME`.")
    print(f"Models folder {args.models_dir}: {', '.join(found)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="quickbg-bench-models-") as tmp:
        tmp = Path(tmp)
        big = make_12mp(tmp)
        for name in found:
            masks = tmp / name
            masks.mkdir()
            print(f"{name}: measuring ({args.repeats} runs per size)...", flush=True)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, str(big), str(masks), "-",
                 "--repeats", str(args.repeats), "--threads", str(args.threads),
                 "--models-dir", str(args.models_dir)],
                cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name}: FAILED\n{proc.stderr[-2000:]}")
                continue
            rows.append((json.loads(proc.stdout.strip().splitlines()[-1]), masks))
        reference = args.references or (rows[0][1] if rows else None)
        label = (str(args.references) if args.references
                 else f"{rows[0][0]['model']}'s own masks" if rows else "-")
        print(f"\nthreads={args.threads}, repeats={args.repeats}, reference: {label}\n")
        print("| model | load s | 1 MP s/image | 12 MP s/image | peak RSS MB | IoU | MAE |")
        print("|---|---|---|---|---|---|---|")
        for row, masks in rows:
            iou, mae = compare(masks, reference)
            print(f"| {row['model']} | {row['load_s']:.1f} | {row['times']['1mp']:.2f} | "
                  f"{row['times']['12mp']:.2f} | {row['peak_rss_mb']:.0f} | {iou:.4f} | "
                  f"{mae:.4f} |")


if __name__ == "__main__":
    main()
