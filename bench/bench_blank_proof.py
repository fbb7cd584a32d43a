# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What proving a disk blank costs: the spread proof (per region size) against a full read.

    sudo python bench/bench_blank_proof.py [--size 4G] [--rounds 3] [--regions 4K,64K,1M] [--dir DIR]

Makes a loop disk of ``--size`` on this machine whose every block is written with
zeros (a sparse file would read its holes without any I/O, which no real disk
does), attached with direct I/O so that the loop device reads its file. Before
each read the page cache of the disk and of its file is dropped (posix_fadvise,
for these two files only). Then, per round: ``host_volumes.sample`` with the
spread proof for each region size, and with the full proof. Prints the median
time and the bytes read of each, the ratio full / spread, and the cost per TiB:
the spread proof reads the same number of regions on any disk (its cost grows
with the number of reads, not the size), the full proof reads every byte (its
cost per TiB is 1 TiB at the measured rate). Timing is reported, never asserted.
The disk and its file are removed afterwards.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402  (puts this checkout's collection on sys.path)

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices  # noqa: E402
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv  # noqa: E402

TIB = 1 << 40
COLLECTIONS = conftest.COLLECTIONS  # where this checkout's collection is imported from


def drop_cache(*paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_disk(directory, size):
    image = os.path.join(directory, "blank-proof.img")
    with open(image, "wb") as handle:
        chunk = b"\0" * (4 << 20)
        for _chunk in range(size // len(chunk)):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    loop = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", image], capture_output=True, text=True,
                          check=True).stdout.strip()
    return image, loop


def timed(path, size, proof, length=None):
    """Seconds and result of one proof; the spread proof with ``length`` regions (the
    collection's own sampler when that is its region size)."""
    start = time.monotonic()
    if proof == "full":
        result = hv.sample(path, size, proof="full")
    elif length == hv.SAMPLE_LENGTH:
        result = hv.sample(path, size)
    else:
        result = _spread(path, size, length)
    return time.monotonic() - start, result


def _spread(path, size, length):
    """The spread proof's reads with regions of ``length`` bytes."""
    offsets = hv.sample_offsets(size, length=length)
    fd = os.open(path, os.O_RDONLY)
    read, zero = 0, True
    try:
        for offset, count in offsets:
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, count)
            read += len(data)
            zero = zero and not data.strip(b"\0")
    finally:
        os.close(fd)
    return {"zero": zero, "read": read, "regions": len(offsets) - 2, "proof": "spread"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4G")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--regions", default="4K,64K,1M", help="region sizes of the spread proof to compare")
    parser.add_argument("--dir", default=None, help="where the disk's file goes (default: a temporary directory)")
    args = parser.parse_args()
    size = devices.parse_size(args.size)
    lengths = [devices.parse_size(x) for x in args.regions.split(",")]
    workdir = tempfile.mkdtemp(prefix="bench-blank-proof-", dir=args.dir)
    print("making a %s loop disk of zeros (written, not sparse) ..." % hv.human_bytes(size), flush=True)
    image, loop = make_disk(workdir, size)
    try:
        results = {}
        for _round in range(args.rounds):
            for length in lengths:
                drop_cache(loop, image)
                seconds, found = timed(loop, size, "spread", length)
                results.setdefault(("spread", length), []).append((seconds, found["read"], found["regions"]))
            drop_cache(loop, image)
            seconds, found = timed(loop, size, "full")
            assert found["zero"], found
            results.setdefault(("full", None), []).append((seconds, found["read"], 0))
        full = statistics.median(s for s, _r, _n in results[("full", None)])
        full_read = results[("full", None)][0][1]
        print("\ndisk %s (%s), %d rounds, medians:" % (loop, hv.human_bytes(size), args.rounds))
        print("%-26s %10s %12s %10s %14s" % ("proof", "seconds", "read", "full/this", "per TiB disk"))
        for length in lengths:
            runs = results[("spread", length)]
            seconds = statistics.median(s for s, _r, _n in runs)
            print("%-26s %10.3f %12s %9.0fx %14s" % (
                "spread, %d x %s" % (runs[0][2], hv.human_bytes(length)), seconds, hv.human_bytes(runs[0][1]),
                full / seconds if seconds else float("inf"), "%.2f s (fixed)" % seconds))
        rate = full_read / full if full else float("inf")
        per_tib = "%.0f s (%.0f MiB/s)" % (TIB / rate, rate / (1 << 20))
        print("%-26s %10.3f %12s %10s %14s" % ("full", full, hv.human_bytes(full_read), "1x", per_tib))
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        os.unlink(image)
        os.rmdir(workdir)


if __name__ == "__main__":
    main()
