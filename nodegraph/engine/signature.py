"""Cache signatures: a node's identity for caching, built from its type, version, literal inputs, fingerprint and
the signatures of the nodes feeding it — so changing one literal invalidates exactly that node and its descendants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nodegraph.core.schema import NodeDef


def node_signature(node_def: NodeDef, literals: Mapping[str, Any], fingerprint: str | None,
                   linked: Mapping[str, tuple[str, str]], nonce: str | None = None) -> str:
    """A hex digest identifying a node's result.

    Args:
        node_def: the node's type (its id and version are part of the identity).
        literals: the effective literal inputs (defaults filled in).
        fingerprint: the node's fingerprint hook result (e.g. a file's size and mtime), or None.
        linked: for each linked input, (signature of the source node, source output name).
        nonce: set for not-idempotent nodes so they never match an earlier run.
    """
    identity = {
        "type": node_def.type,
        "version": node_def.version,
        "literals": dict(literals),
        "fingerprint": fingerprint,
        "linked": {name: list(source) for name, source in linked.items()},
        "nonce": nonce,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
