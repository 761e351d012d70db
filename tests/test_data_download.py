"""Downloads against a local HTTP server on 127.0.0.1 serving generated files."""

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlpsearch.engine.data import DataError, datasets, download, load_dataset


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, mode)``; mode "short" closes after half the body."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body, mode = self.server.routes.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "short" else body)
        # HTTP/1.0: the connection closes here, cutting a "short" transfer.

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(isolated_data, tmp_path, monkeypatch, server, write_mnist_like):
    """Private cache (no system folders, downloads allowed); MNIST mirror = the local server
    serving a tiny MNIST-like set; checksums = its files'."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MLPSEARCH_OFFLINE")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLPSEARCH_MIRROR", base)
    write_mnist_like(tmp_path / "mirror", n_train=100, n_test=30)
    files = {name: (tmp_path / "mirror" / name).read_bytes() for name in download.FILES}
    for name, body in files.items():
        server.routes[f"/mnist/{name}"] = (body, "ok")
    checksums = {name: hashlib.md5(body).hexdigest() for name, body in files.items()}
    monkeypatch.setitem(download.CHECKSUMS, "mnist", checksums)
    return isolated_data


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_download_success_then_reuse(cache, server, capsys):
    ds = load_dataset("mnist")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (80, 20, 30)
    assert files_under(cache) == sorted(f"mnist/{f}" for f in download.FILES)
    assert str(cache / "mnist") in ds.source
    assert "downloading http://127.0.0.1" in capsys.readouterr().err
    server.routes.clear()  # a second load must not need the network
    server.requests.clear()
    assert len(load_dataset("mnist").y_test) == 30
    assert server.requests == []


def test_checksum_mismatch_leaves_nothing(cache, monkeypatch):
    monkeypatch.setitem(download.CHECKSUMS["mnist"], download.FILES[0], "0" * 32)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    assert "checksum mismatch" in str(err.value) and "\n" not in str(err.value)
    assert files_under(cache) == []


def test_short_transfer_leaves_nothing(cache, server):
    path = f"/mnist/{download.FILES[0]}"
    server.routes[path] = (server.routes[path][0], "short")
    with pytest.raises(DataError, match="transfer cut short: received"):
        load_dataset("mnist")
    assert files_under(cache) == []


def test_short_transfer_without_checksum_is_still_caught(cache, server, monkeypatch):
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {})
    path = f"/mnist/{download.FILES[1]}"
    server.routes[path] = (server.routes[path][0], "short")
    with pytest.raises(DataError, match="cut short"):
        load_dataset("mnist")
    assert files_under(cache) == [f"mnist/{download.FILES[0]}"]  # the verified first file stays


def test_missing_file_on_mirror(cache, server):
    del server.routes[f"/mnist/{download.FILES[2]}"]
    with pytest.raises(DataError, match="HTTP Error 404|Not Found"):
        load_dataset("mnist")
    assert f"mnist/{download.FILES[2]}" not in files_under(cache)


def test_next_mirror_is_tried(cache, server, monkeypatch):
    monkeypatch.delenv("MLPSEARCH_MIRROR")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setitem(download.MIRRORS, "mnist", [f"{base}/gone/", f"{base}/mnist/"])
    assert len(load_dataset("mnist").y_test) == 30
    assert f"/gone/{download.FILES[0]}" in server.requests


def test_partial_cache_is_completed(cache, server):
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    for name in download.FILES[:2]:
        (folder / name).write_bytes(server.routes[f"/mnist/{name}"][0])
    assert len(load_dataset("mnist").y_train) == 80
    assert sorted(server.requests) == sorted(f"/mnist/{f}" for f in download.FILES[2:])


def test_no_network_no_files_is_one_clear_line(cache, monkeypatch):
    monkeypatch.setenv("MLPSEARCH_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("mnist: IDX files not found (looked in ")
    assert str(cache / "mnist") in message and "download of train-images-idx3-ubyte.gz" in message
    assert "put train-images-idx3-ubyte.gz" in message and "data_dir" in message
    assert files_under(cache) == []


def test_offline_switch_skips_the_download(cache, server, monkeypatch):
    monkeypatch.setenv("MLPSEARCH_OFFLINE", "1")
    with pytest.raises(DataError, match="MLPSEARCH_OFFLINE is set"):
        load_dataset("mnist")
    assert server.requests == []


def test_published_tables_are_complete():
    """Every named dataset but the embedded one has mirrors and checksums for its four files."""
    downloadable = set(datasets.NAMES) - {"digits"}
    assert set(download.MIRRORS) == set(download.CHECKSUMS) == downloadable
    for name, table in download.CHECKSUMS.items():
        assert sorted(table) == sorted(download.FILES)
        assert all(len(md5) == 32 and int(md5, 16) >= 0 for md5 in table.values())
        assert all(url.endswith("/") for url in download.MIRRORS[name])


def test_mirror_env_var_shapes_urls(monkeypatch):
    monkeypatch.setenv("MLPSEARCH_MIRROR", "http://example.invalid/base/")
    assert download.mirrors_for("kmnist") == ["http://example.invalid/base/kmnist/"]
    monkeypatch.delenv("MLPSEARCH_MIRROR")
    assert download.mirrors_for("kmnist") == download.MIRRORS["kmnist"]
    assert os.environ.get("MLPSEARCH_MIRROR") is None
