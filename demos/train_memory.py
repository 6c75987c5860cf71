"""Does training stay within memory on a large folder? (issue 23, item 1: "1000 images of 512² must train within
2 GiB").

Writes ``--count`` grey PNGs of ``--size``² (crops of bundled non-test pictures, turned and shifted, so that every file
differs) into ``--folder`` (default ``/tmp/fem_crossdiff_memory``; reused if already complete), then trains one Adam
epoch on them with small patches (``fem_crossdiff.learning.training.train``: each image is read, its patches cropped
and the image dropped, so memory holds one epoch's patches, not the images) and prints the peak resident memory of the
process (``resource.getrusage``, which includes the Python interpreter, numpy and Firedrake's import)::

    python demos/train_memory.py                         # 1000 images of 512², one epoch
    python demos/train_memory.py --count 20 --size 64    # a quick check

The record is in ``fem_crossdiff/learned/README.md`` §13 ("Memory")."""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np


def write_folder(folder, count, size):
    """``count`` PNGs of ``size``² in ``folder`` (skipped if they are there already)."""
    import imageio.v3 as iio
    from fem_crossdiff.imaging.data import TRAIN_IMAGES, load
    os.makedirs(folder, exist_ok=True)
    names = [os.path.join(folder, f"img{k:04d}.png") for k in range(count)]
    if all(os.path.exists(n) for n in names):
        return names
    pictures = [load(n) for n in TRAIN_IMAGES]
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        img = np.rot90(pictures[k % len(pictures)], k // len(pictures) % 4)
        reps = (-(-size // img.shape[0]) + 1, -(-size // img.shape[1]) + 1)
        big = np.tile(img, reps)                             # room for a shifted crop of any picture
        r, c = rng.integers(0, big.shape[0] - size + 1), rng.integers(0, big.shape[1] - size + 1)
        iio.imwrite(name, (255 * big[r:r + size, c:c + size]).round().astype(np.uint8))
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="number of images (default 1000)")
    ap.add_argument("--size", type=int, default=512, help="side of each image in pixels (default 512)")
    ap.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "fem_crossdiff_memory"),
                    help="where the images are written (default /tmp/fem_crossdiff_memory)")
    ap.add_argument("--patch", type=int, default=32, help="training patch size (default 32)")
    args = ap.parse_args(argv)
    sys.argv = sys.argv[:1]                         # PETSc reads the command line too: leave it none of ours
    t0 = time.perf_counter()
    folder = os.path.join(args.folder, f"{args.count}x{args.size}")
    write_folder(folder, args.count, args.size)
    wrote = time.perf_counter() - t0
    from fem_crossdiff.learning.training import train
    out = os.path.join(tempfile.mkdtemp(prefix="train_memory_"), "M.json")
    t1 = time.perf_counter()
    train(out, images=[folder], sigma255=25.0, patch=args.patch, per_image=1, optimiser="adam", epochs=1,
          log=lambda *a, **k: None, command="demos/train_memory.py")
    seconds = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # KiB on Linux
    data = args.count * args.size ** 2 * 8 / 2 ** 20
    print(f"{args.count} images of {args.size}² ({data:.0f} MiB as float64) in {folder} ({wrote:.0f} s to write); "
          f"1 Adam epoch, {args.count} patches of {args.patch}², default model: {seconds:.0f} s, "
          f"peak resident memory {peak:.0f} MiB")
    return peak


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
