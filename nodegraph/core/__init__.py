"""The pure-Python core: port types, node schemas, the registry, the workflow graph and its file format, validation.

Nothing here imports torch, diffusers or Qt (a test proves it).
"""

from nodegraph.core.errors import Cancelled, NodeError, NodegraphError, SchemaError, WorkflowError
from nodegraph.core.graph import Link, NodeInstance, Workflow
from nodegraph.core.migrations import CURRENT_VERSION, upgrade_node_versions
from nodegraph.core.registry import NodeRegistry, PackProblem
from nodegraph.core.schema import Input, InputSpec, NodeDef, Output, OutputSpec, node
from nodegraph.core.types import PortType
from nodegraph.core.validate import Problem, validate

__all__ = [
    "CURRENT_VERSION",
    "Cancelled",
    "Input",
    "InputSpec",
    "Link",
    "NodeDef",
    "NodeError",
    "NodeInstance",
    "NodeRegistry",
    "NodegraphError",
    "Output",
    "OutputSpec",
    "PackProblem",
    "PortType",
    "Problem",
    "SchemaError",
    "Workflow",
    "WorkflowError",
    "node",
    "upgrade_node_versions",
    "validate",
]
