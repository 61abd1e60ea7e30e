"""--store on an object store (harness/cache/store.py): entries published by uploading their files and then
a completion marker, never by a rename; half-uploaded or corrupt entries recomputed, not loaded;
artifacts downloaded into a local scratch folder on another node. memory:// and a no-rename
stand-in (tests/norename_fs.py) play the object store; no network."""
from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from pathlib import Path

import fsspec
import pytest
from norename_fs import NoRenameFileSystem

from harness.cache.hashing import fingerprint
from harness.cache.stages import StageCache
from harness.cache.store import MARKER
from harness.cli import main
from harness.core.records import read_jsonl, temp_files
from harness.engine.config import RunConfig
from harness.engine.runner import run

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def memory_url():
    url = f"memory://store-test-{uuid.uuid4().hex[:8]}/prefix"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.fixture
def norename_url(tmp_path):
    fsspec.register_implementation("norename", NoRenameFileSystem, clobber=True)
    return f"norename://{tmp_path}/bucket/prefix"


@pytest.fixture(params=["memory", "norename"])
def store_url(request):
    return request.getfixturevalue(f"{request.param}_url")


def _node(monkeypatch, tmp_path, name):
    """Another machine: its own local cache (scratch copies, hash memo), the same store."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / name))


class Builder:
    def __init__(self, payload=b"weights" * 100):
        self.calls, self.payload = 0, payload

    def __call__(self, folder: Path) -> dict:
        self.calls += 1
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "adapter.bin").write_bytes(self.payload)
        return {"built": self.calls}


PARTS = {"what": "an adapter"}
KEY = fingerprint({"kind": "train", "format": 1, **PARTS})


def _publish(url, monkeypatch, tmp_path, build=None):
    _node(monkeypatch, tmp_path, "node1")
    build = build or Builder()
    folder, meta, hit = StageCache(root=url).artifact("train", PARTS, build, tmp_path / "fallback")
    assert not hit and build.calls == 1
    return folder, meta


def test_publish_uploads_then_marker_and_another_node_downloads(store_url, monkeypatch, tmp_path):
    folder, meta = _publish(store_url, monkeypatch, tmp_path)
    assert meta == {"built": 1, "stored_at": f"{store_url}/train/{KEY}"}
    fs, base = fsspec.core.url_to_fs(store_url)
    manifest = json.loads(fs.cat_file(f"{base}/train/{KEY}/{MARKER}"))
    assert sorted(manifest["files"]) == ["checkpoint/adapter.bin", "meta.json"]
    assert manifest["files"]["checkpoint/adapter.bin"]["size"] == 700
    assert str(folder).startswith(str(tmp_path / "node1"))  # built in this node's scratch folder

    _node(monkeypatch, tmp_path, "node2")
    build = Builder()
    folder2, meta2, hit = StageCache(root=store_url).artifact("train", PARTS, build, tmp_path / "fallback")
    assert hit and build.calls == 0 and meta2 == meta
    assert str(folder2).startswith(str(tmp_path / "node2"))
    assert (folder2 / "checkpoint" / "adapter.bin").read_bytes() == b"weights" * 100
    again = StageCache(root=store_url)  # the scratch copy now serves this node
    assert again.artifact("train", PARTS, build, tmp_path / "fallback")[2] and build.calls == 0
    assert not temp_files(tmp_path)


def test_the_marker_path_never_renames(norename_url, monkeypatch, tmp_path):
    fs, base = fsspec.core.url_to_fs(norename_url)
    with pytest.raises(NotImplementedError):  # the stand-in really refuses
        fs.mv(__file__, f"{base}/x")
    writes = []  # the store's paths, in the order they are written
    put, pipe = NoRenameFileSystem.put_file, NoRenameFileSystem.pipe_file
    monkeypatch.setattr(NoRenameFileSystem, "put_file",
                        lambda self, lpath, rpath, **kw: writes.append(rpath) or put(self, lpath, rpath, **kw))
    monkeypatch.setattr(NoRenameFileSystem, "pipe_file",
                        lambda self, path, value, **kw: writes.append(path) or pipe(self, path, value, **kw))
    _publish(norename_url, monkeypatch, tmp_path)
    names = [w.rsplit(f"{KEY}/", 1)[1] for w in writes]
    assert sorted(names[:-1]) == ["checkpoint/adapter.bin", "meta.json"] and names[-1] == MARKER  # marker last
    cache = StageCache(root=norename_url)
    cache.store_cell("k", {"predictions": {"q1": {}}})
    assert cache.load_cell("k") == {"format": 1, "predictions": {"q1": {}}}
    assert not [p for p in fs.find(base) if ".tmp" in p]


def test_a_half_uploaded_entry_is_ignored_and_overwritten(store_url, monkeypatch, tmp_path):
    fs, base = fsspec.core.url_to_fs(store_url)
    prefix = f"{base}/train/{KEY}"
    # a writer died after uploading part of its files: no marker
    fs.pipe_file(f"{prefix}/meta.json", b'{"built": 99}')
    fs.pipe_file(f"{prefix}/checkpoint/adapter.bin", b"half")
    fs.pipe_file(f"{prefix}/stale.bin", b"from the dead writer")
    _node(monkeypatch, tmp_path, "node1")
    build = Builder()
    folder, meta, hit = StageCache(root=store_url).artifact("train", PARTS, build, tmp_path / "fallback")
    assert not hit and build.calls == 1 and meta["built"] == 1
    assert sorted(p[len(prefix) + 1:] for p in fs.find(prefix)) == ["_COMPLETE", "checkpoint/adapter.bin",
                                                                     "meta.json"]
    assert fs.cat_file(f"{prefix}/checkpoint/adapter.bin") == b"weights" * 100


def _garbage(fs, prefix, manifest):
    fs.pipe_file(f"{prefix}/{MARKER}", b'{"format": 1, "files": {"meta.js')


def _not_a_manifest(fs, prefix, manifest):
    fs.pipe_file(f"{prefix}/{MARKER}", b'["meta.json"]')


def _wrong_sha(fs, prefix, manifest):
    manifest["files"]["checkpoint/adapter.bin"]["sha256"] = "0" * 64
    fs.pipe_file(f"{prefix}/{MARKER}", json.dumps(manifest).encode())


def _wrong_size(fs, prefix, manifest):
    manifest["files"]["checkpoint/adapter.bin"]["size"] += 1
    fs.pipe_file(f"{prefix}/{MARKER}", json.dumps(manifest).encode())


def _file_changed(fs, prefix, manifest):  # same size, other bytes
    fs.pipe_file(f"{prefix}/checkpoint/adapter.bin", b"WEIGHTS" * 100)


def _escapes(fs, prefix, manifest):
    manifest["files"]["../../../outside"] = manifest["files"].pop("checkpoint/adapter.bin")
    fs.pipe_file(f"{prefix}/{MARKER}", json.dumps(manifest).encode())


def _missing_file(fs, prefix, manifest):
    fs.rm_file(f"{prefix}/checkpoint/adapter.bin")


@pytest.mark.parametrize("corrupt", [_garbage, _not_a_manifest, _wrong_sha, _wrong_size, _file_changed, _escapes,
                                     _missing_file])
def test_a_corrupt_entry_is_recomputed_not_loaded(corrupt, store_url, monkeypatch, tmp_path):
    _publish(store_url, monkeypatch, tmp_path)
    fs, base = fsspec.core.url_to_fs(store_url)
    prefix = f"{base}/train/{KEY}"
    corrupt(fs, prefix, json.loads(fs.cat_file(f"{prefix}/{MARKER}")))
    _node(monkeypatch, tmp_path, "node2")
    build = Builder(payload=b"retrained" * 10)
    folder, meta, hit = StageCache(root=store_url).artifact("train", PARTS, build, tmp_path / "fallback")
    assert not hit and build.calls == 1 and meta["built"] == 1
    assert (folder / "checkpoint" / "adapter.bin").read_bytes() == b"retrained" * 10
    assert not (tmp_path / "outside").exists() and not temp_files(tmp_path)
    # republished: a third node downloads the new entry
    _node(monkeypatch, tmp_path, "node3")
    folder3, _, hit = StageCache(root=store_url).artifact("train", PARTS, Builder(), tmp_path / "fallback")
    assert hit and (folder3 / "checkpoint" / "adapter.bin").read_bytes() == b"retrained" * 10


def test_a_scratch_copy_that_lost_a_file_is_downloaded_again(memory_url, monkeypatch, tmp_path):
    folder, _ = _publish(memory_url, monkeypatch, tmp_path)
    (folder / "checkpoint" / "adapter.bin").write_bytes(b"cut")
    build = Builder()
    folder, _, hit = StageCache(root=memory_url).artifact("train", PARTS, build, tmp_path / "fallback")
    assert hit and build.calls == 0 and (folder / "checkpoint" / "adapter.bin").read_bytes() == b"weights" * 100


def test_a_torn_cell_record_is_recomputed(memory_url):
    cache = StageCache(root=memory_url)
    cache.store_cell("k", {"predictions": {}})
    assert cache.load_cell("k") is not None
    fs, base = fsspec.core.url_to_fs(memory_url)
    fs.pipe_file(f"{base}/cells/k.json", fs.cat_file(f"{base}/cells/k.json")[:-5])
    assert cache.load_cell("k") is None


def _cfg(model, corpus, out, limit):
    options = {"zero-shot": {}, "rag": {"k": 2}, "lora": {"epochs": 1, "r": 4, "alpha": 8}}
    return RunConfig(benchmarks=(str(corpus),), strategies=tuple(options), options=options, model=str(model),
                     device="cpu", max_new_tokens=4, batch_size=4, train_limit=8, limit=limit, out=str(out))


def _run(cfg, store):
    results_dir = run(cfg, progress=False, log=lambda m: None, store=store)
    results = json.loads((results_dir / "results.json").read_text())
    rows = read_jsonl(results_dir / "predictions.jsonl")
    return results, {c["strategy"]: c for c in results["cells"]}, [(r["strategy"], r["id"], r["output"]) for r in rows]


def test_a_matrix_on_a_memory_store_publishes_then_hits_from_any_node(tiny_model, tiny_corpus, memory_url,
                                                                     monkeypatch, tmp_path):
    from harness.engine.scaleout.executors import store_root

    store = store_root(memory_url)
    _node(monkeypatch, tmp_path, "node1")
    first, c1, out1 = _run(_cfg(tiny_model, tiny_corpus, tmp_path / "r1", 3), store)
    assert all(c["status"] == "ok" for c in c1.values()), [c["error"] for c in c1.values()]
    assert first["cache"]["root"] == memory_url and first["cache"]["artifacts_built"] == 2  # index, adapter
    fs, base = fsspec.core.url_to_fs(memory_url)
    assert len(fs.find(f"{base}/cells")) == 3
    assert len(fs.glob(f"{base}/index/*/{MARKER}")) == len(fs.glob(f"{base}/train/*/{MARKER}")) == 1
    assert c1["lora"]["prepare"]["stored_at"].startswith(f"{memory_url}/train/")

    _node(monkeypatch, tmp_path, "node2")  # every cell complete in the store: nothing computed or loaded
    second, c2, out2 = _run(_cfg(tiny_model, tiny_corpus, tmp_path / "r2", 3), store)
    assert second["cache"]["cells_fully_cached"] == 3 and second["model"]["load"] is None
    assert out2 == out1 and all(c2[s]["metrics"] == c1[s]["metrics"] for s in c1)

    _node(monkeypatch, tmp_path, "node3")  # new questions: the index and the adapter come from the store
    third, c3, out3 = _run(_cfg(tiny_model, tiny_corpus, tmp_path / "r3", None), store)
    assert third["cache"]["artifacts_hit"] == 2 and third["cache"]["artifacts_built"] == 0
    assert third["cache"]["predictions_hit"] == 9 and third["cache"]["predictions_computed"] == 9
    # (a cell answering new questions keeps its first prepare record; the downloads are in node3's scratch)
    assert len(list((tmp_path / "node3").glob(f"store-scratch/*/train/*/{MARKER}"))) == 1
    assert len(list((tmp_path / "node3").glob(f"store-scratch/*/index/*/{MARKER}"))) == 1
    assert [r for r in out3 if r[1] in {x[1] for x in out1}] == out1
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("url, message", [
    ("nosuch://bucket/x", "unknown protocol nosuch://"),
    ("memory://", "name a bucket or folder"),
    ("s3://bucket/prefix", "the s3:// store needs the s3fs package: pip install s3fs (or pip install -e '.[s3]')"),
])
def test_unknown_protocol_or_missing_driver_is_exit_2(url, message, tiny_corpus, tiny_model, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as when it is not installed
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    code = main(["run", "--benchmark", str(tiny_corpus), "--model", str(tiny_model), "--out", str(tmp_path / "out"),
                 "--strategies", "zero-shot", "--limit", "2", "--quiet", "--store", url])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_workers_publish_to_a_no_rename_store(tiny_model, tiny_corpus, norename_url, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import os

    from harness.engine.scaleout.executors import RayExecutor, store_root

    # The stand-in reaches the workers the way a real fsspec driver does: an installed package whose
    # `fsspec.specs` entry point names it (here a dist-info folder on the workers' PYTHONPATH).
    site = tmp_path / "site"
    dist = site / "norename_fs-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: norename-fs\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[fsspec.specs]\nnorename = norename_fs:NoRenameFileSystem\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    options = {"zero-shot": {}, "lora": {"epochs": 1, "batch_size": 4}}

    def cfg(name):
        return RunConfig(benchmarks=(str(tiny_corpus),), strategies=tuple(options), options=options,
                         model=str(tiny_model), device="cpu", limit=2, train_limit=8, max_new_tokens=6,
                         out=str(tmp_path / name))

    def cells(run_dir):
        return json.loads((run_dir / "results.json").read_text())["cells"]

    local = run(cfg("local"), progress=False, log=lambda m: None, store=tmp_path / "plain-store")
    store = store_root(norename_url)
    with RayExecutor() as executor:  # a local cluster; its workers get the PYTHONPATH above
        remote = run(cfg("ray"), progress=False, log=lambda m: None, store=store, executor=executor)
        assert executor.submitted == 2
        again = run(cfg("again"), progress=False, log=lambda m: None, store=store, executor=executor)
        assert executor.submitted == 2 and executor.skipped == 2  # complete in the store: not submitted
        # Ray Train persists rank 0's adapter checkpoint through the same no-rename store
        two = run(dataclasses.replace(cfg("two"), strategies=("lora",), options={"lora": options["lora"]},
                                      train_workers=2), progress=False,
                  log=lambda m: None, store=store, executor=executor)
    [t] = cells(two)
    assert t["status"] == "ok", t.get("error")
    assert t["prepare"]["ray_train"]["workers"] == 2 and t["prepare"]["world_size"] == 2
    a, b = cells(local), cells(remote)
    assert [c["status"] for c in b] == ["ok", "ok"], [c.get("error") for c in b]
    assert all("worker" in c for c in b)
    for x, y in zip(a, b):
        assert x["metrics"] == y["metrics"]
        assert x["prepare"].get("loss_curve") == y["prepare"].get("loss_curve")
    outputs = [[(r["strategy"], r["id"], r["output"]) for r in read_jsonl(d / "predictions.jsonl")]
               for d in (local, remote, again)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert b[1]["prepare"]["stored_at"].startswith(f"{norename_url}/train/")
    fs, base = fsspec.core.url_to_fs(norename_url)
    assert len(fs.glob(f"{base}/train/*/{MARKER}")) == 2 and len(fs.find(f"{base}/cells")) == 3
    assert not fs.find(f"{base}/ray-train")  # Ray Train's run state is removed once the adapter is published
    assert not [p for p in fs.find(base) if ".tmp" in p]
