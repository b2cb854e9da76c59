"""``python -m minidl.data.fetch``: make a data set available and say where it is.

1. Look where ``load_fashion_mnist`` looks: only in the directory named by ``--root`` or
   ``$MINIDL_DATA`` (three layouts) when one is named, else in the user cache and the
   Debian package directory.
2. If it is not there, download it into the named directory, else into the user cache
   (MD5-checked, atomic; files already there are kept).
3. If that fails, no directory was named, the data set has a Debian package and apt-get
   is usable (running as root, or password-less sudo), run ``apt-get update`` and
   ``apt-get install -y dataset-fashion-mnist``, then look again.

Prints the directory the data is read from and the image counts; exits 0 when the data
is available, 1 (with the searched places and the ways to get it) when it is not.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from .datasets import (DATASETS, DataNotFoundError, _not_found, _search, _spec,
                       download_dataset, find_dataset, named_data_dir, read_location)
from .download import DownloadError


def apt_command() -> list[str] | None:
    """The apt-get command prefix this process may use, or None when it may not."""
    if shutil.which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["apt-get"]
    if shutil.which("sudo") is not None:
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["sudo", "-n", "apt-get"]
    return None


def run_command(cmd: list[str]) -> int:
    """Run ``cmd`` non-interactively, its output going to ours; return its exit status."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, check=False).returncode


def install_debian_package(package: str, apt: list[str], log=print) -> bool:
    """``apt-get update`` then ``apt-get install -y package``; True if the install worked."""
    log(f"running: {' '.join(apt)} update")
    if run_command([*apt, "update"]) != 0:
        log("apt-get update failed; trying the install with the package lists as they are")
    log(f"running: {' '.join(apt)} install -y {package}")
    return run_command([*apt, "install", "-y", package]) == 0


def _report(location, spec, log) -> None:
    splits = read_location(location, spec)
    log(f"{spec.title}: {location.directory}  [{location.origin}]")
    log(f"  train {splits.train_images.shape[0]} images, test {splits.test_images.shape[0]} "
        f"images; files: " + ", ".join(p.name for p in location.paths.values()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minidl.data.fetch",
        description="Find a data set (root, $MINIDL_DATA, user cache, Debian package, "
                    "torchvision layout); download it or install the Debian package "
                    "when missing; print where it is.")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist")
    parser.add_argument("--root", default=None,
                        help="the directory to use (the only one searched; downloads go "
                             "there); default $MINIDL_DATA, else the user cache")
    parser.add_argument("--base-url", default=None,
                        help="download from here instead of the official location "
                             "(default: $MINIDL_DATA_URL, else the official mirrors)")
    parser.add_argument("--no-download", action="store_true", help="never download")
    parser.add_argument("--no-apt", action="store_true",
                        help="never install the Debian package")
    args = parser.parse_args(argv)
    spec = _spec(args.dataset)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        _report(find_dataset(spec, args.root), spec, log)
        return 0
    except DataNotFoundError:
        log(f"{spec.title} not found locally.")

    named = named_data_dir(args.root)
    tried = []
    if args.no_download:
        tried.append("Download not attempted (--no-download).")
    else:
        try:
            if named is None:
                location = download_dataset(spec, base_url=args.base_url)
            else:   # look again: files already there are kept, and may be another data set's
                download_dataset(spec, dest=named[1], base_url=args.base_url)
                location = find_dataset(spec, args.root)
            _report(location, spec, log)
            return 0
        except (DownloadError, DataNotFoundError, OSError) as exc:
            if not isinstance(exc, DataNotFoundError):
                log(f"download failed: {exc}")
                tried.append(f"Download failed: {exc}")

    if args.no_apt or not spec.debian_package:
        pass
    elif named is not None:
        tried.append(f"{spec.debian_package} not installed: it would put the files in "
                     f"{spec.debian_dir}, not in {named[1]} ({named[0]}).")
    elif (apt := apt_command()) is None:
        tried.append(f"apt-get is not usable here (needs root or password-less sudo): "
                     f"{spec.debian_package} not installed.")
    elif install_debian_package(spec.debian_package, apt, log):
        try:
            _report(find_dataset(spec, args.root), spec, log)
            return 0
        except DataNotFoundError:
            tried.append(f"{spec.debian_package} was installed but its files are not in "
                         f"{spec.debian_dir}.")
    else:
        tried.append(f"Installing {spec.debian_package} with apt-get failed.")

    _, searched = _search(spec, args.root)
    if named is not None:   # the named directory's error says nothing of what was tried
        print("\n".join(tried), file=sys.stderr)
    print(_not_found(spec, searched, "\n".join(tried), args.root), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
