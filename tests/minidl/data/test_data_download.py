"""Downloading from a local HTTP server on 127.0.0.1: success, checksum failure, transfers
cut short or interrupted (no partial file, ever), mirrors, and ``python -m
minidl.data.fetch``."""
from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from minidl.data import (ChecksumError, DataNotFoundError, DownloadError, download_dataset,
                         load_fashion_mnist, write_idx)
from minidl.data import datasets, fetch
from minidl.data.download import CHUNK_BYTES, download_file

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class Handler(BaseHTTPRequestHandler):
    """GET /<mode>/<name>: ``good`` serves the file, ``cut`` announces its full length
    but closes after half, ``corrupt`` flips one byte, ``nolength`` sends no
    Content-Length; unknown names are 404."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        mode, _, name = self.path.lstrip("/").partition("/")
        data = self.server.files.get(name)
        if data is None or mode not in ("good", "cut", "corrupt", "nolength"):
            self.send_error(404)
            return
        self.send_response(200)
        if mode != "nolength":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "cut":
            data = data[:len(data) // 2]
        elif mode == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def dead_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Isolated search places (temporary cache, empty Debian dir, no proxies)."""
    for var in ("MINIDL_DATA", "MINIDL_DATA_URL", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        dataclasses.replace(spec, debian_dir=str(tmp_path / "debian")))
    return tmp_path


@pytest.fixture
def served_dataset(server, env, monkeypatch, tmp_path):
    """A small synthetic Fashion-MNIST served at ``server.url/good/``, with the spec's
    MD5s and mirror pointed at it.  Returns the {name: bytes} served."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(7)
    arrays = [rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, 20).astype(np.uint8),
              rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, 6).astype(np.uint8)]
    for name, array in zip(NAMES, arrays):
        write_idx(src / name, array)
        server.files[name] = (src / name).read_bytes()
    spec = datasets.DATASETS["fashion-mnist"]
    files = {key: (name, hashlib.md5(server.files[name]).hexdigest())
             for key, name in zip(datasets.FILE_KEYS, NAMES)}
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", dataclasses.replace(
        spec, files=files, mirrors=(server.url + "/good/",)))
    return arrays


def payload(n=3 * CHUNK_BYTES + 123):
    return np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_download_file_success(server, env, tmp_path):
    data = payload()
    server.files["blob.bin"] = data
    dest = tmp_path / "out" / "blob.bin"
    result = download_file(f"{server.url}/good/blob.bin", dest, hashlib.md5(data).hexdigest(),
                           progress=False)
    assert result == dest
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # no temporary left


def test_download_without_content_length(server, env, tmp_path):
    data = payload()
    server.files["blob.bin"] = data
    dest = tmp_path / "blob.bin"
    download_file(f"{server.url}/nolength/blob.bin", dest, hashlib.md5(data).hexdigest(),
                  progress=False)
    assert dest.read_bytes() == data


@pytest.mark.parametrize("mode, md5_of, error, pattern", [
    ("corrupt", "right", ChecksumError, "checksum mismatch: expected MD5"),
    ("good", "wrong", ChecksumError, "checksum mismatch"),
    ("cut", "right", DownloadError, "connection closed early: expected 196731 bytes"),
    ("nolength-cut", "right", ChecksumError, "checksum mismatch"),
])
def test_failed_download_leaves_no_file(server, env, tmp_path, mode, md5_of, error, pattern):
    data = payload()
    server.files["blob.bin"] = data
    if mode == "nolength-cut":  # no length announced and half the bytes: only MD5 can tell
        server.files["blob.bin"] = data[:len(data) // 2]
        mode = "nolength"
    md5 = hashlib.md5(data if md5_of == "right" else b"other").hexdigest()
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        download_file(f"{server.url}/{mode}/blob.bin", out / "blob.bin", md5, progress=False)
    assert list(out.iterdir()) == []


def test_failure_keeps_the_previous_file_intact(server, env, tmp_path):
    data = payload()
    server.files["blob.bin"] = data
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"previous complete version")
    with pytest.raises(DownloadError):
        download_file(f"{server.url}/cut/blob.bin", dest, hashlib.md5(data).hexdigest(),
                      progress=False)
    assert dest.read_bytes() == b"previous complete version"
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]


def test_keyboard_interrupt_mid_transfer_leaves_no_file(server, env, tmp_path):
    data = payload()
    server.files["blob.bin"] = data
    seen = []

    def interrupt(done, total):
        seen.append((done, total))
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        download_file(f"{server.url}/good/blob.bin", out / "blob.bin", None, progress=interrupt)
    assert seen == [(CHUNK_BYTES, len(data))]  # interrupted after the first chunk
    assert list(out.iterdir()) == []


def test_http_error_and_refused_connection(server, env, tmp_path, dead_url):
    with pytest.raises(DownloadError, match=r"/good/absent.bin.*404"):
        download_file(f"{server.url}/good/absent.bin", tmp_path / "a", None, progress=False)
    with pytest.raises(DownloadError, match=dead_url):
        download_file(f"{dead_url}/x.bin", tmp_path / "b", None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_file_url_and_bad_url(env, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    download_file(src.as_uri(), tmp_path / "copy.bin", hashlib.md5(b"abc" * 1000).hexdigest(),
                  progress=False)
    assert (tmp_path / "copy.bin").read_bytes() == b"abc" * 1000
    with pytest.raises(DownloadError, match="expected an http://, https:// or file:// URL"):
        download_file("example.org/x.gz", tmp_path / "x.gz", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "src.bin"]


def test_progress_line_on_request(server, env, tmp_path, capsys):
    data = payload()
    server.files["blob.bin"] = data
    download_file(f"{server.url}/good/blob.bin", tmp_path / "blob.bin", None, progress=True)
    err = capsys.readouterr().err
    assert "\rdownloading blob.bin" in err and "100%" in err and err.endswith("\n")
    download_file(f"{server.url}/good/blob.bin", tmp_path / "blob2.bin", None)
    assert capsys.readouterr().err == ""  # not a TTY: quiet by default


def test_bad_progress_argument(env, tmp_path):
    with pytest.raises(ValueError, match="progress"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x", progress="yes")


# --- whole data sets -----------------------------------------------------------------

def test_load_downloads_into_the_cache_then_reuses_it(served_dataset, server, env,
                                                      monkeypatch):
    splits = load_fashion_mnist(download=True)
    np.testing.assert_array_equal(splits.train_images, served_dataset[0])
    np.testing.assert_array_equal(splits.test_labels, served_dataset[3])
    cache = env / "cache" / "minidl" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)
    assert len(server.requests) == 4
    load_fashion_mnist(download=True)
    assert len(server.requests) == 4  # found in the cache, nothing fetched again


def test_minidl_data_url_overrides_the_mirrors(served_dataset, server, env, monkeypatch,
                                               dead_url):
    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        dataclasses.replace(spec, mirrors=(dead_url + "/",)))
    monkeypatch.setenv("MINIDL_DATA_URL", server.url + "/good")
    splits = load_fashion_mnist()
    np.testing.assert_array_equal(splits.train_labels, served_dataset[1])


def test_next_mirror_is_tried_and_only_missing_files_fetched(served_dataset, server, env,
                                                             monkeypatch, tmp_path):
    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", dataclasses.replace(
        spec, mirrors=(server.url + "/nowhere/", server.url + "/good/")))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / NAMES[1]).write_bytes(server.files[NAMES[1]])
    location = download_dataset("fashion-mnist", dest=dest, progress=False)
    assert location.directory == dest
    fetched = sorted(r.rsplit("/", 1)[1] for r in server.requests if r.startswith("/good/"))
    assert fetched == sorted([NAMES[0], NAMES[2], NAMES[3]])
    assert len(server.requests) == 6  # each of the three first tried on the 404 mirror


def test_checksum_failure_of_a_data_set_file_leaves_cache_clean(served_dataset, server, env,
                                                                monkeypatch):
    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        dataclasses.replace(spec, mirrors=(server.url + "/corrupt/",)))
    with pytest.raises(DataNotFoundError, match="Download failed: .*checksum mismatch"):
        load_fashion_mnist()
    cache = env / "cache" / "minidl" / "fashion-mnist"
    assert list(cache.iterdir()) == []


def test_offline_error_lists_places_and_download_failure(env, monkeypatch, dead_url):
    monkeypatch.setenv("MINIDL_DATA_URL", dead_url)
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(download=True)
    message = str(info.value)
    assert "Download failed" in message and dead_url in message
    assert str(env / "cache" / "minidl" / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert not any((env / "cache" / "minidl" / "fashion-mnist").glob("*"))


# --- python -m minidl.data.fetch -------------------------------------------------------

def test_fetch_reports_data_already_present(served_dataset, env, monkeypatch, capsys,
                                            tmp_path):
    download_dataset("fashion-mnist", dest=tmp_path / "mine", progress=False)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "mine"))
    assert fetch.main([]) == 0
    out = capsys.readouterr().out
    assert f"Fashion-MNIST: {tmp_path / 'mine'}" in out and "$MINIDL_DATA" in out
    assert "train 20 images, test 6 images" in out


def test_fetch_downloads_when_missing(served_dataset, env, capsys):
    assert fetch.main(["--dataset", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert str(env / "cache" / "minidl" / "fashion-mnist") in out


def test_fetch_installs_the_debian_package_when_download_fails(served_dataset, env,
                                                                monkeypatch, dead_url, capsys,
                                                                tmp_path):
    commands = []

    def fake_apt(cmd):
        commands.append(cmd)
        if cmd[-1] == "dataset-fashion-mnist":  # the "package" installs its files
            download_dataset("fashion-mnist", dest=env / "debian", base_url=None,
                             progress=False)
        return 0

    monkeypatch.setattr(fetch, "apt_command", lambda: ["apt-get"])
    monkeypatch.setattr(fetch, "run_command", fake_apt)
    assert fetch.main(["--base-url", dead_url]) == 0
    assert commands == [["apt-get", "update"],
                        ["apt-get", "install", "-y", "dataset-fashion-mnist"]]
    out = capsys.readouterr().out
    assert "download failed" in out
    assert f"Fashion-MNIST: {env / 'debian'}  [Debian package dataset-fashion-mnist]" in out


@pytest.mark.parametrize("apt, args, expected", [
    (None, [], "apt-get is not usable here"),
    (["apt-get"], ["--no-apt"], "Download failed"),
    (["apt-get"], [], "Installing dataset-fashion-mnist with apt-get failed"),
])
def test_fetch_failure_exits_1_with_the_ways_to_get_the_data(env, monkeypatch, dead_url,
                                                             capsys, apt, args, expected):
    monkeypatch.setattr(fetch, "apt_command", lambda: apt)
    monkeypatch.setattr(fetch, "run_command", lambda cmd: 100)
    assert fetch.main(["--base-url", dead_url, *args]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert "Fashion-MNIST not found. Searched, in order:" in err
    assert "apt-get install dataset-fashion-mnist" in err


def test_fetch_no_download_never_contacts_the_server(served_dataset, server, env, monkeypatch,
                                                     capsys):
    monkeypatch.setattr(fetch, "apt_command", lambda: None)
    assert fetch.main(["--no-download"]) == 1
    assert server.requests == []
    assert "Download not attempted (--no-download)" in capsys.readouterr().err
