"""The collector policy of long passes: off during a first pass, its heap frozen after, no cycles left."""

from __future__ import annotations

import datetime as dt
import gc
import json
from dataclasses import replace
from pathlib import Path

import pytest

from chainwarden import gcpolicy, pkigen
from chainwarden.chaincache import ChainCache
from chainwarden.checker import cached_chains, evaluate_pass, read_inputs
from chainwarden.config import Config
from chainwarden.report import Code
from chainwarden.service import Daemon

NOW = pkigen.EPOCH + dt.timedelta(days=10)


@pytest.fixture
def collector_restored():
    """Whatever a test does to the collector, the next test finds it enabled and unfrozen."""
    yield
    gc.set_debug(0)
    gc.garbage.clear()
    gc.unfreeze()
    gc.enable()


def test_frozen_after_pauses_the_collector_and_freezes_what_survives(collector_restored):
    """Inside the block the collector is off; after it, the survivors sit in the permanent generation."""
    gc.unfreeze()
    kept = []
    with gcpolicy.frozen_after():
        assert not gc.isenabled()
        kept.append({"a fact": ["that lives on"]})
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_frozen_after_restores_the_collector_when_the_pass_fails(collector_restored):
    """A pass that raises leaves the collector as it found it (on), never switched off for good."""
    with pytest.raises(RuntimeError), gcpolicy.frozen_after():
        raise RuntimeError("the pass failed")
    assert gc.isenabled()


def test_frozen_after_keeps_a_collector_that_was_off_switched_off(collector_restored):
    """An embedding program that runs without the collector does not get it switched on."""
    gc.disable()
    with gcpolicy.frozen_after():
        pass
    assert not gc.isenabled()


def _varied_site(tmp_path: Path) -> tuple[list[str], Config]:
    """Connections that go through most of the engine: complete, missing links, unreadable bundles,
    a missing file, a broken connection, a leaf only in the bundle, and no cached chain."""
    pki = tmp_path / "pki"
    pki.mkdir()
    state = tmp_path / "state"
    cache = ChainCache(state / "chains")
    rsa = pkigen.three_tier("ok.example.test", kind="rsa", label="Alpha")
    ec = pkigen.three_tier("ec.example.test", kind="ec", label="Beta")
    (pki / "full.pem").write_bytes(pkigen.pem_bundle(rsa.intermediate, rsa.root))
    (pki / "no-intermediate.pem").write_bytes(pkigen.pem_bundle(ec.root))
    (pki / "no-root.pem").write_bytes(pkigen.pem_bundle(ec.intermediate))
    (pki / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (pki / "with-leaf.pem").write_bytes(pkigen.pem_bundle(rsa.intermediate, rsa.root, rsa.leaf))
    cache.store("ok.example.test", 443, (rsa.leaf.cert, rsa.intermediate.cert))
    cache.store("ec.example.test", 443, (ec.leaf.cert, ec.intermediate.cert))
    cache.store("wrong-name.example.test", 443, (rsa.leaf.cert, rsa.intermediate.cert))
    connections = {
        "ok": {"baseurl": "https://ok.example.test", "server_cert": "pki/full.pem"},
        "missing_intermediate": {"baseurl": "https://ec.example.test", "server_cert": "pki/no-intermediate.pem"},
        "missing_root": {"baseurl": "https://ec.example.test", "server_cert": "pki/no-root.pem"},
        "unreadable": {"baseurl": "https://ok.example.test", "server_cert": "pki/garbage.pem"},
        "absent": {"baseurl": "https://ok.example.test", "server_cert": "pki/absent.pem"},
        "hostname": {"baseurl": "https://wrong-name.example.test", "server_cert": "pki/full.pem"},
        "bundle_leaf": {"baseurl": "https://uncached.example.test", "server_cert": "pki/with-leaf.pem"},
        "broken": {"baseurl": "http://plain.example.test", "server_cert": "pki/full.pem"},
    }
    path = tmp_path / "conn.json"
    path.write_text(json.dumps({"external_connections": connections}))
    return [str(path)], Config(verify_probe=False, state_dir=str(state), verify_workers=1)


def test_a_first_pass_leaves_no_cyclic_garbage(tmp_path, collector_restored):
    """What a first pass leaves is frozen, not collected: so it must leave no reference cycle at all,
    on the broken connections' paths included (a cycle there would never be freed)."""
    paths, config = _varied_site(tmp_path)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # the collector keeps what it would have freed, for us to see
    results = evaluate_pass(read_inputs(paths, now=NOW), cached_chains(config), NOW, config, parallel=False)
    gc.collect()
    left = list(gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    codes = {p.code for r in results for p in r.problems}
    assert {Code.MISSING_INTERMEDIATE, Code.MISSING_ROOT, Code.BUNDLE_UNREADABLE, Code.HOSTNAME_MISMATCH} <= codes
    assert {Code.CONNECTION_INVALID, Code.LEAF_IN_BUNDLE} <= codes
    assert left == [], f"{len(left)} objects in reference cycles, such as {[type(o).__name__ for o in left[:8]]}"


def test_the_daemons_first_pass_leaves_no_cyclic_garbage(tmp_path, collector_restored):
    """The same for the daemon's first pass, with its inventory, fingerprints and metrics snapshot."""
    paths, config = _varied_site(tmp_path)
    daemon = Daemon(replace(config, watch_connections=tuple(paths)))
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    results = daemon.full_pass(probe=False)
    gc.collect()
    left = list(gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    assert len([r for r in results if r.connection]) == 7
    assert left == [], f"{len(left)} objects in reference cycles, such as {[type(o).__name__ for o in left[:8]]}"
