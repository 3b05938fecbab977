"""The project's own exception types: each carries a message meant for the user, not a traceback."""

from __future__ import annotations


class NodegraphError(Exception):
    """Base class of every error the project raises on purpose; its message is shown to the user as is."""


class WorkflowError(NodegraphError):
    """A workflow document cannot be read: malformed JSON, a wrong structure, or an unsupported format version.

    `where` names the place in the document (a JSON path such as ``nodes.ckpt.inputs``, or ``line 3, column 7``)
    so the user can find it.
    """

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SchemaError(NodegraphError):
    """A node declaration is invalid (raised at registration time, naming the node type)."""


class NodeError(NodegraphError):
    """A user-caused failure inside a node (bad file, wrong value): reported as its message, with no traceback."""


class Cancelled(NodegraphError):
    """Raised inside a run when the user asked to stop it; the executor turns it into a cancelled run."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)
