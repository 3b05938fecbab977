"""Cache signatures: equal identities give equal digests; every part of the identity changes it."""

from __future__ import annotations

import dataclasses

import pytest

from nodegraph.engine.signature import node_signature


@pytest.fixture
def scale(registry):
    return registry["Scale"]


def sig(node_def, literals=None, fingerprint=None, linked=None, nonce=None):
    literals = {"factor": 2} if literals is None else literals
    linked = {"value": ("upstream-sig", "VALUE")} if linked is None else linked
    return node_signature(node_def, literals, fingerprint, linked, nonce=nonce)


def test_equal_inputs_give_equal_signatures(scale):
    a = sig(scale, {"factor": 2}, "fp", {"value": ("abc", "VALUE")})
    b = sig(scale, dict([("factor", 2)]), "fp", {"value": ("abc", "VALUE")})
    assert a == b
    assert isinstance(a, str) and len(a) == 64 and int(a, 16) >= 0


def test_key_order_does_not_matter(registry):
    choose = registry["Choose"]
    a = node_signature(choose, {"word": "beta", "weight": 0.5, "shout": True}, None, {})
    b = node_signature(choose, {"shout": True, "weight": 0.5, "word": "beta"}, None, {})
    assert a == b


def test_equal_definitions_give_equal_signatures(scale):
    assert sig(scale) == sig(dataclasses.replace(scale))


@pytest.mark.parametrize("change", [
    {"node_def": "version"},
    {"node_def": "type"},
    {"literals": {"factor": 3}},
    {"literals": {"factor": 2.0000001}},
    {"literals": {}},
    {"fingerprint": "fp-2"},
    {"fingerprint": None},
    {"linked": {"value": ("other-sig", "VALUE")}},
    {"linked": {"value": ("upstream-sig", "OTHER")}},
    {"linked": {"factor": ("upstream-sig", "VALUE")}},
    {"linked": {}},
    {"nonce": "run-1:s"},
], ids=lambda change: next(iter(change)) + ":" + str(next(iter(change.values()))))
def test_any_change_changes_the_signature(scale, change):
    base = {"node_def": scale, "literals": {"factor": 2}, "fingerprint": "fp-1",
            "linked": {"value": ("upstream-sig", "VALUE")}, "nonce": None}
    changed = dict(base)
    for key, value in change.items():
        if key == "node_def":
            bumped = {"version": scale.version + 1} if value == "version" else {"type": "Scale2"}
            changed["node_def"] = dataclasses.replace(scale, **bumped)
        else:
            changed[key] = value
    assert sig(**base) != sig(**changed)


def test_bool_and_int_literals_are_distinguished(registry):
    # False == 0 in Python, but a node may well treat them differently
    choose = registry["Choose"]
    base = {"word": "alpha", "weight": 0.5}
    assert (node_signature(choose, {**base, "shout": False}, None, {})
            != node_signature(choose, {**base, "shout": 0}, None, {}))
    assert (node_signature(choose, {**base, "shout": True}, None, {})
            != node_signature(choose, {**base, "shout": 1}, None, {}))


def test_nonces_differ_between_runs(registry):
    random = registry["Random"]
    linked = {"value": ("sig", "VALUE")}
    assert (node_signature(random, {}, None, linked, nonce="run-a:r")
            != node_signature(random, {}, None, linked, nonce="run-b:r"))


def test_upstream_change_propagates_through_a_chain(registry):
    number, scale, add = registry["Number"], registry["Scale"], registry["Add"]

    def chain_signatures(value, factor):
        n = node_signature(number, {"value": value}, None, {})
        s = node_signature(scale, {"factor": factor}, None, {"value": (n, "VALUE")})
        a = node_signature(add, {}, None, {"a": (s, "VALUE")})
        return n, s, a

    n1, s1, a1 = chain_signatures(1, 2)
    n2, s2, a2 = chain_signatures(5, 2)
    assert n1 != n2 and s1 != s2 and a1 != a2  # a changed root invalidates every descendant
    n3, s3, a3 = chain_signatures(1, 3)
    assert n3 == n1 and s3 != s1 and a3 != a1
    assert chain_signatures(1, 2) == (n1, s1, a1)
