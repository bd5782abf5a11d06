"""How a chip read scales with the image: time and peak memory per MiB, 1 MiB to 512 MiB.

    python benchmarks/bench_scale.py [--sizes 1 4 16 64 128 256 512] [--variants flat factors]
                                     [--ber 1e-3] [--reads 3] [--markdown]

Each row is one image size and device variant, measured in a fresh subprocess: an image of
random 8-bit weights is packed, then a chip of `sram-14nm` is built with no sweep (its whole
knob range allowed) and read at the supply voltage where its bit error rate is about 1e-3
(`--ber`), three times. "flat" is the catalogue device; "factors" adds a transient flip
mechanism with lognormal per-cell factors (sigma 1, p = 1e-4 each way), the costlier read. A
row reports the first read (chip construction and its persistent faults included), the median
of the next reads, both per MiB, what the chip holds (`Chip.nbytes`: its fault candidates and
weak-cell list), and the peak resident memory during the reads above what the process held with
the image packed (Linux's high-water mark, reset through /proc/self/clear_refs), in MiB and as
a multiple of the image's size, and what it holds beyond the chip's state and the read's result
(one image): issue 17's goal is a read within 2x the image plus the faults, so that remainder
should not grow with the image. The footer fits time against size
(least squares slope, seconds per MiB) and reports how far from linear the largest size is: its
per-MiB time over the smallest measured size's at or above 16 MiB. A 100M-parameter 8-bit model
is about 95 MiB: between the 64 and 128 MiB rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SIZES = (1, 4, 16, 64, 128, 256, 512)
VARIANTS = ("flat", "factors")
FACTOR_MECHANISM = {
    "name": "noisy-cells", "kind": "transient", "p_zero_to_one": 1.0e-4, "p_one_to_zero": 1.0e-4,
    "cell_factor": {"distribution": "lognormal", "sigma": 1.0}}

# Runs in the subprocess: argv = variant, MiB, target BER, reads.
CHILD = r"""
import gc, json, statistics, sys, time
import numpy as np
import memsim
from memsim.memory.chip import Chip
from memsim.memory.image import MemoryImage
from memsim.spec.device import parse_device
from memsim.spec.loader import load_document, resolve_device_path
from memsim.physics.device import Device

variant, mib, target, reads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
doc = load_document(resolve_device_path("sram-14nm"))
if variant == "factors":
    doc["faults"].append(json.loads(sys.argv[5]))
device = Device(parse_device(doc, "sram-14nm+" + variant))
lo, hi = 0.7, 1.0  # v_rel where the BER is `target`, by bisection (BER falls with v_rel)
for _ in range(60):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if device.at(v_rel=mid).ber > target else (lo, mid)
v = 0.5 * (lo + hi)
small = MemoryImage.pack({"w": (np.zeros(4096, np.int64), "twos_complement", 8)})
Chip(device, small.n_bits, seed=0).read(small, {"v_rel": v})  # compile or load the kernels
weights = np.random.default_rng(0).integers(-128, 128, mib << 20, dtype=np.int64)
image = MemoryImage.pack({"w": (weights, "twos_complement", 8)})
del weights
gc.collect()


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


with open("/proc/self/clear_refs", "w") as f:  # the high-water mark restarts from here
    f.write("5")
base = status_kib("VmRSS")
start = time.perf_counter()
chip = Chip(device, image.n_bits, seed=1)
result = chip.read(image, {"v_rel": v}, seed=0)
first = time.perf_counter() - start
errors = result.bit_errors
del result
later = []
for t in range(1, reads):
    start = time.perf_counter()
    result = chip.read(image, {"v_rel": v}, seed=t)
    later.append(time.perf_counter() - start)
    del result
peak = status_kib("VmHWM")
print(json.dumps({"v_rel": v, "first_s": first, "read_s": statistics.median(later),
                  "ber": errors / image.n_bits, "image_bytes": image.words.nbytes,
                  "extra_bytes": max(0, peak - base) * 1024, "chip_bytes": chip.nbytes}))
"""


@dataclass(frozen=True)
class Row:
    """One size and variant."""

    variant: str
    mib: int
    v_rel: float
    ber: float
    first_s: float
    read_s: float
    image_bytes: int
    extra_bytes: int
    chip_bytes: int

    @property
    def read_s_per_mib(self) -> float:
        return self.read_s / self.mib

    @property
    def memory_over_image(self) -> float:
        return self.extra_bytes / self.image_bytes

    @property
    def beyond_chip_and_result(self) -> int:
        """Peak bytes above the image that are neither the chip's state nor the result."""
        return self.extra_bytes - self.chip_bytes - self.image_bytes


def measure(variant: str, mib: int, ber: float, reads: int) -> Row:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(mib), repr(ber), str(reads),
         json.dumps(FACTOR_MECHANISM)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: {variant} at {mib} MiB failed: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return Row(variant, mib, r["v_rel"], r["ber"], r["first_s"], r["read_s"], r["image_bytes"],
               r["extra_bytes"], r["chip_bytes"])


def slope(rows: Sequence[Row]) -> float:
    """Least-squares seconds per MiB of the steady read time against size."""
    x = [r.mib for r in rows]
    y = [r.read_s for r in rows]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0


def table(rows: Sequence[Row], markdown: bool) -> list[str]:
    header = ("variant", "MiB", "v_rel", "BER", "first read s", "read s", "read s/MiB",
              "chip MiB", "peak above image", "x image", "other MiB")
    lines = []
    body = [(r.variant, str(r.mib), f"{r.v_rel:.4f}", f"{r.ber:.2e}", f"{r.first_s:.3f}",
             f"{r.read_s:.3f}", f"{r.read_s_per_mib:.4f}", f"{r.chip_bytes / 2**20:.0f}",
             f"{r.extra_bytes / 2**20:.0f} MiB", f"{r.memory_over_image:.2f}",
             f"{r.beyond_chip_and_result / 2**20:.0f}") for r in rows]
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(b) + " |" for b in body)
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        lines.extend("  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True))
                     for b in body)
    return lines


def footer(rows: Sequence[Row]) -> list[str]:
    lines = []
    for variant in dict.fromkeys(r.variant for r in rows):
        mine = [r for r in rows if r.variant == variant]
        largest = mine[-1]
        ref = next((r for r in mine if r.mib >= 16), mine[0])
        lines.append(
            f"{variant}: slope {slope(mine):.4f} s/MiB; per-MiB read time at {largest.mib} MiB "
            f"is {largest.read_s_per_mib / ref.read_s_per_mib:.2f}x that at {ref.mib} MiB "
            f"(1.00 = linear); peak memory above the image at most "
            f"{max(r.memory_over_image for r in mine):.2f}x the image; beyond the chip's "
            f"state and the result at most "
            f"{max(r.beyond_chip_and_result for r in mine) / 2**20:.0f} MiB")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        metavar="MIB", help="image sizes in MiB (default: %(default)s)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="device variants (default: both)")
    parser.add_argument("--ber", type=float, default=1e-3,
                        help="bit error rate the supply voltage is set for (default 1e-3)")
    parser.add_argument("--reads", type=int, default=3,
                        help="reads per row; the first builds the chip (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.reads < 2 or any(s < 1 for s in args.sizes):
        parser.error("--reads must be >= 2 and every size >= 1 MiB")
    rows = [measure(v, s, args.ber, args.reads) for v in args.variants for s in args.sizes]
    print("\n".join(table(rows, args.markdown)))
    print()
    print("\n".join(footer(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
