"""The node registry: declaration checks at registration, custom port types, and loading (broken) node packs."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from nodegraph.core import Input, NodeDef, NodeRegistry, Output, PackProblem, PortType, node
from nodegraph.core.errors import SchemaError
from nodegraph.core.graph import Workflow
from nodegraph.core.schema import InputSpec
from nodegraph.core.validate import validate
from nodegraph.packs import create_registry


@pytest.fixture(autouse=True)
def _forget_imported_packs():
    """Packs imported by a test stay out of sys.modules afterwards, so no test sees another's modules."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("nodegraph_packs."):
            del sys.modules[name]


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def good_node_source(type_id: str) -> str:
    return textwrap.dedent(f"""
        from nodegraph.core import Input, Output, PortType, node

        @node(type="{type_id}", display_name="{type_id}", category="test", description="ok",
              inputs=[Input.int("x", 1)], outputs=[Output("X", PortType.INT)])
        def good(ctx, x):
            return {{"X": x}}
        """)


def make(type_id: str = "Thing", run=None, **fields) -> NodeDef:
    if run is None:
        def run(ctx, x):
            return {"X": x}
        fields.setdefault("inputs", (Input.int("x", 0),))
    fields.setdefault("display_name", type_id)
    fields.setdefault("outputs", (Output("X", PortType.INT),))
    return NodeDef(type=type_id, run=run, **fields)


def register_error(registry: NodeRegistry, node_def: NodeDef) -> str:
    with pytest.raises(SchemaError) as info:
        registry.register(node_def)
    assert node_def.type not in registry or registry[node_def.type] is not node_def
    return str(info.value)


# --- registration checks --------------------------------------------------------------------------------------------
def test_valid_node_registers_and_is_found():
    reg = NodeRegistry()
    thing = make()
    reg.register(thing, pack="mine")
    assert reg.get("Thing") is thing and reg["Thing"] is thing and "Thing" in reg
    assert list(reg) == [thing] and len(reg) == 1 and reg.pack_of("Thing") == "mine"
    assert reg.get("Other") is None and "Other" not in reg and reg.pack_of("Other") is None


def test_run_parameter_not_in_schema():
    def run(ctx, x, y):
        return {}

    message = register_error(NodeRegistry(), make("ExtraParam", run=run, inputs=(Input.int("x", 0),)))
    assert message.startswith("node 'ExtraParam': ")
    assert "run() parameter 'y' matches no input" in message


def test_schema_input_missing_from_run():
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("MissingParam", run=run,
                                                  inputs=(Input.int("x", 0), Input.int("y", 0))))
    assert "'MissingParam'" in message and "run() has no parameter for input 'y'" in message


def test_run_taking_kwargs_accepts_every_input():
    def run(ctx, **inputs):
        return {}

    reg = NodeRegistry()
    reg.register(make("Kwargs", run=run, inputs=(Input.int("x", 0), Input.int("y", 0))))
    assert "Kwargs" in reg


def test_run_without_context_parameter():
    def run(*, x):
        return {}

    message = register_error(NodeRegistry(), make("NoCtx", run=run, inputs=(Input.int("x", 0),)))
    assert "'NoCtx'" in message and "execution context" in message


def test_duplicate_type_id():
    reg = NodeRegistry()
    reg.register(make("Dup"), pack="first")
    second = make("Dup")
    message = register_error(reg, second)
    assert "'Dup'" in message and "already registered by pack first" in message
    reg.register(second, replace=True)
    assert reg["Dup"] is second


def test_duplicate_port_names():
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("Twice", run=run, inputs=(Input.int("x", 0), Input.int("x", 1))))
    assert "'Twice'" in message and "input name 'x' is declared twice" in message


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (Input.int("x", 11, min=0, max=10), "default 11 is above the maximum 10"),
        (Input.int("x", -1, min=0, max=10), "default -1 is below the minimum 0"),
        (Input.float("x", 2.5, min=0.0, max=1.0), "above the maximum 1"),
        (Input.choice("x", ["a", "b"], default="c"), "default 'c' is not one of: a, b"),
        (Input.int("x", "3"), "default expected an integer, got a string"),
        (Input.int("x", True), "default expected an integer, got a boolean"),
        (Input.int("x", 1.5), "default expected an integer, got a number"),
        (Input.string("x", 3), "default expected a string"),
        (Input.boolean("x", 0), "default expected true or false"),
        (Input.float("x", float("nan")), "default expected a finite number"),
        (InputSpec("x", PortType.MODEL, default="model.ckpt"), "a MODEL input cannot have a default value"),
    ],
)
def test_invalid_default(spec, fragment):
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("BadDefault", run=run, inputs=(spec,)))
    assert message.startswith("node 'BadDefault': ")
    assert fragment in message


def test_min_above_max():
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("MinMax", run=run, inputs=(Input.int("x", None, min=5, max=1),)))
    assert "'MinMax'" in message and "min 5 is above max 1" in message


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (Input.int("x", 0, step=0), "step must be positive"),
        (Input.int("x", 0, min=float("inf")), "min must be a finite number"),
        (Input.choice("x", []), "needs at least one choice"),
        (Input.choice("x", ["a", "a"]), "choices must be distinct strings"),
        (InputSpec("x", PortType.STRING, "", min=1), "min/max/step only apply to INT and FLOAT"),
        (InputSpec("x", PortType.STRING, "", choices=("a",)), "choices only apply to CHOICE inputs"),
        (InputSpec("x", PortType.INT, 0, multiline=True), "multiline only applies to STRING"),
    ],
)
def test_other_input_declaration_problems(spec, fragment):
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("BadInput", run=run, inputs=(spec,)))
    assert "'BadInput'" in message and fragment in message


def test_unknown_port_type():
    def run(ctx, x):
        return {}

    message = register_error(NodeRegistry(), make("Unknown", run=run, inputs=(Input.link("x", "WIDGET"),)))
    assert "'Unknown'" in message and "input 'x' has unknown port type 'WIDGET'" in message
    message = register_error(NodeRegistry(), make("UnknownOut", outputs=(Output("Y", "GADGET"),)))
    assert "'UnknownOut'" in message and "output 'Y' has unknown port type 'GADGET'" in message


@pytest.mark.parametrize("type_id", ["", "1abc", "has space", "with/slash", "_private", "ü-node"])
def test_bad_type_id(type_id):
    message = register_error(NodeRegistry(), make(type_id))
    assert message.startswith(f"node {type_id!r}: ")
    assert "type id must start with a letter" in message


@pytest.mark.parametrize("type_id", ["A", "Load.Checkpoint", "my-pack.Node_2"])
def test_good_type_ids(type_id):
    reg = NodeRegistry()
    reg.register(make(type_id))
    assert type_id in reg


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "2"])
def test_bad_version(version):
    message = register_error(NodeRegistry(), make("Versioned", version=version))
    assert "'Versioned'" in message and "version must be an integer >= 1" in message


def test_empty_display_name():
    message = register_error(NodeRegistry(), make("Nameless", display_name=""))
    assert "'Nameless'" in message and "display_name is empty" in message


def test_every_problem_is_listed_at_once():
    def run(ctx, y):
        return {}

    message = register_error(NodeRegistry(), make("Many", run=run, version=0,
                                                  inputs=(Input.int("x", 50, min=0, max=10),)))
    for fragment in ("version must be", "above the maximum", "no parameter for input 'x'", "parameter 'y'"):
        assert fragment in message


def test_fingerprint_signature_is_checked():
    def run(ctx, x, model):
        return {}

    def fingerprint(_settings, x, model):
        return None

    message = register_error(NodeRegistry(), make(
        "Fp", run=run, inputs=(Input.int("x", 0), Input.link("model", PortType.MODEL)), fingerprint=fingerprint))
    assert "fingerprint() parameter 'model' matches no input" in message

    def good_fingerprint(_settings, x):
        return str(x)

    reg = NodeRegistry()
    reg.register(make("Fp", run=run, inputs=(Input.int("x", 0), Input.link("model", PortType.MODEL)),
                      fingerprint=good_fingerprint))
    assert "Fp" in reg


def test_node_decorator_builds_a_nodedef_and_registers_nothing():
    @node(type="Deco", display_name="Deco", category="c", description="d",
          inputs=[Input.int("x", 1)], outputs=[Output("X", PortType.INT)], output_node=True)
    def deco(ctx, x):
        return {"X": x}

    assert isinstance(deco, NodeDef)
    assert deco.type == "Deco" and deco.output_node and deco.version == 1 and deco.input("x").default == 1
    assert deco.run(None, x=4) == {"X": 4}
    reg = NodeRegistry()
    assert "Deco" not in reg
    reg.register(deco)
    assert reg["Deco"] is deco


# --- port types -----------------------------------------------------------------------------------------------------
def test_custom_port_type_from_pack(registry):
    assert "TOKEN" in registry.port_types
    assert PortType.MODEL in registry.port_types and PortType.ANY in registry.port_types
    assert registry.pack_of("MakeToken") == "fakepack"
    wf = Workflow()
    wf.add_node("Number", "n")
    wf.add_node("MakeToken", "tok")
    wf.add_node("TokenValue", "untok")
    wf.add_node("Collect", "out")
    wf.connect("n", "VALUE", "tok", "value")
    wf.connect("tok", "TOKEN", "untok", "token")
    wf.connect("untok", "VALUE", "out", "value")
    assert validate(wf, registry) == []


def test_custom_port_type_is_unknown_without_the_pack():
    def run(ctx, token):
        return {}

    reg = NodeRegistry()
    assert "TOKEN" not in reg.port_types
    with pytest.raises(SchemaError, match="unknown port type 'TOKEN'"):
        reg.register(make("UsesToken", run=run, inputs=(Input.link("token", "TOKEN"),)))
    reg.add_port_type("TOKEN")
    reg.register(make("UsesToken", run=run, inputs=(Input.link("token", "TOKEN"),)))
    assert "UsesToken" in reg


@pytest.mark.parametrize("name", ["", "has space", "9LIVES", None, 3])
def test_add_port_type_refuses_bad_names(name):
    with pytest.raises(SchemaError, match="port type name"):
        NodeRegistry().add_port_type(name)


def test_registry_fixture_holds_builtin_and_fake_nodes(registry):
    for type_id in ("PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean", "Number", "Add",
                    "Scale", "Choose", "MakeToken", "TokenValue", "Fail", "Random", "WriteText", "Collect", "Slow"):
        assert type_id in registry, type_id
    assert registry.pack_of("PrimitiveInt") == "builtin"
    assert registry["Random"].not_idempotent and registry["Collect"].output_node


def test_registries_are_independent(fake_pack):
    one = create_registry([fake_pack], user_packs=False)
    two = create_registry(user_packs=False)
    assert "Number" in one and "Number" not in two
    assert "TOKEN" in one.port_types and "TOKEN" not in two.port_types


# --- loading packs --------------------------------------------------------------------------------------------------
def test_single_file_pack(tmp_path):
    name = unique("single")
    path = write(tmp_path / f"{name}.py", 'PORT_TYPES = ["GIZMO"]\n' + good_node_source("SingleGood"))
    reg = NodeRegistry()
    registered = reg.load_pack(path)
    assert [d.type for d in registered] == ["SingleGood"]
    assert reg.problems == []
    assert reg.pack_of("SingleGood") == name and "GIZMO" in reg.port_types


def test_pack_with_import_error_in_one_module_still_loads_the_rest(tmp_path):
    name = unique("halfbroken")
    pack = tmp_path / name
    write(pack / "__init__.py", "")
    write(pack / "good.py", good_node_source("HalfGood"))
    write(pack / "broken.py", "import module_that_does_not_exist_anywhere\n")
    reg = NodeRegistry()
    registered = reg.load_pack(pack)
    assert [d.type for d in registered] == ["HalfGood"]
    assert len(reg.problems) == 1
    problem = reg.problems[0]
    assert isinstance(problem, PackProblem) and problem.pack == name
    assert "broken" in problem.message and "ModuleNotFoundError" in problem.message
    assert "module_that_does_not_exist_anywhere" in problem.details  # the traceback
    assert str(problem).startswith(f"node pack {name}: ")


def test_pack_whose_root_module_raises_import_error(tmp_path):
    broken = unique("rootbroken")
    write(tmp_path / broken / "__init__.py", 'raise ImportError("needs a library that is not installed")\n')
    reg = NodeRegistry()
    assert reg.load_pack(tmp_path / broken) == []
    assert [(p.pack, "ImportError" in p.message) for p in reg.problems] == [(broken, True)]
    assert "needs a library" in reg.problems[0].message
    assert f"nodegraph_packs.{broken}" not in sys.modules


def test_pack_with_invalid_node_declaration_still_loads_valid_nodes(tmp_path):
    name = unique("invalid")
    source = good_node_source("ValidOne") + textwrap.dedent("""
        @node(type="InvalidOne", display_name="Invalid", category="test", description="bad default",
              inputs=[Input.int("x", 99, min=0, max=10)], outputs=[Output("X", PortType.INT)])
        def invalid(ctx, x):
            return {"X": x}

        @node(type="WrongParams", display_name="Wrong", category="test", description="bad run",
              inputs=[Input.int("x", 1)])
        def wrong(ctx, y):
            return {}
        """)
    path = write(tmp_path / f"{name}.py", source)
    reg = NodeRegistry()
    registered = reg.load_pack(path)
    assert [d.type for d in registered] == ["ValidOne"]
    assert "ValidOne" in reg and "InvalidOne" not in reg and "WrongParams" not in reg
    messages = sorted(p.message for p in reg.problems)
    assert len(messages) == 2 and all(p.pack == name for p in reg.problems)
    assert "node 'InvalidOne'" in messages[0] and "above the maximum" in messages[0]
    assert "node 'WrongParams'" in messages[1] and "parameter 'y'" in messages[1]


def test_pack_calling_sys_exit_does_not_stop_the_app(tmp_path):
    name = unique("exiter")
    write(tmp_path / f"{name}.py", "import sys\nsys.exit(3)\n")
    reg = NodeRegistry()
    assert reg.load_pack(tmp_path / f"{name}.py") == []
    assert len(reg.problems) == 1 and "SystemExit" in reg.problems[0].message


def test_pack_raising_arbitrary_exceptions(tmp_path):
    name = unique("raiser")
    write(tmp_path / f"{name}.py", "1 / 0\n")
    reg = NodeRegistry()
    reg.load_pack(tmp_path / f"{name}.py")
    assert len(reg.problems) == 1 and "ZeroDivisionError" in reg.problems[0].message


def test_pack_with_syntax_error(tmp_path):
    name = unique("syntax")
    write(tmp_path / f"{name}.py", "def broken(:\n")
    reg = NodeRegistry()
    reg.load_pack(tmp_path / f"{name}.py")
    assert len(reg.problems) == 1 and "SyntaxError" in reg.problems[0].message


def test_pack_with_bad_port_type_name(tmp_path):
    name = unique("badport")
    write(tmp_path / f"{name}.py", 'PORT_TYPES = ["GOOD_ONE", "bad one"]\n')
    reg = NodeRegistry()
    reg.load_pack(tmp_path / f"{name}.py")
    assert "GOOD_ONE" in reg.port_types
    assert len(reg.problems) == 1 and "'bad one'" in reg.problems[0].message


def test_missing_pack_and_folder_without_init(tmp_path):
    reg = NodeRegistry()
    assert reg.load_pack(tmp_path / "nowhere") == []
    (tmp_path / "noinit").mkdir()
    assert reg.load_pack(tmp_path / "noinit") == []
    assert [p.pack for p in reg.problems] == ["nowhere", "noinit"]
    assert "does not exist" in reg.problems[0].message and "no __init__.py" in reg.problems[1].message


def test_node_defined_in_two_modules_of_one_pack_is_registered_once(tmp_path):
    name = unique("reexport")
    pack = tmp_path / name
    write(pack / "__init__.py", "")
    write(pack / "impl.py", good_node_source("Shared"))
    write(pack / "api.py", "from .impl import good\nalias = good\n")
    reg = NodeRegistry()
    assert [d.type for d in reg.load_pack(pack)] == ["Shared"]
    assert reg.problems == []


def test_load_packs_from_loads_every_pack_despite_broken_ones(tmp_path):
    folder = tmp_path / "custom_nodes"
    names = {key: unique(key) for key in ("afolder", "bfile", "broken", "exits", "invalid")}
    write(folder / names["afolder"] / "__init__.py", good_node_source("FolderNode"))
    write(folder / names["afolder"] / "more.py", good_node_source("FolderMore"))
    write(folder / f"{names['bfile']}.py", good_node_source("FileNode"))
    write(folder / f"{names['broken']}.py", "raise ImportError('broken pack')\n")
    write(folder / f"{names['exits']}.py", "import sys\nsys.exit()\n")
    write(folder / f"{names['invalid']}.py", good_node_source("InvalidNode").replace('display_name="InvalidNode"',
                                                                                      'display_name=""'))
    write(folder / "_skipped.py", good_node_source("Skipped"))
    write(folder / ".hidden.py", good_node_source("Hidden"))
    write(folder / "notapack" / "mod.py", good_node_source("NotAPack"))
    write(folder / "README.txt", "not python\n")
    reg = NodeRegistry()
    registered = reg.load_packs_from(folder)
    assert sorted(d.type for d in registered) == ["FileNode", "FolderMore", "FolderNode"]
    assert sorted(d.type for d in reg) == ["FileNode", "FolderMore", "FolderNode"]
    assert reg.pack_of("FolderMore") == names["afolder"] and reg.pack_of("FileNode") == names["bfile"]
    assert sorted(p.pack for p in reg.problems) == sorted([names["broken"], names["exits"], names["invalid"]])


def test_load_packs_from_a_missing_folder(tmp_path):
    reg = NodeRegistry()
    assert reg.load_packs_from(tmp_path / "absent") == []
    assert len(reg.problems) == 1 and "is not a folder" in reg.problems[0].message


def test_create_registry_loads_user_packs_from_the_data_folder(nodegraph_home, fake_pack):
    name = unique("userpack")
    write(nodegraph_home / "custom_nodes" / f"{name}.py", good_node_source("UserNode"))
    write(nodegraph_home / "custom_nodes" / f"{unique('broken')}.py", "raise RuntimeError('nope')\n")
    reg = create_registry([fake_pack])
    assert "UserNode" in reg and "PrimitiveInt" in reg and "Number" in reg
    assert len(reg.problems) == 1 and "RuntimeError" in reg.problems[0].message
    assert "UserNode" not in create_registry(user_packs=False)


def test_two_packs_with_the_same_name_in_different_folders(tmp_path):
    # the module name is derived from the pack name only, so the second folder's pack reuses the first's module
    name = unique("samename")
    first = write(tmp_path / "one" / f"{name}.py", good_node_source("FromFirstFolder"))
    second = write(tmp_path / "two" / f"{name}.py", good_node_source("FromSecondFolder"))
    NodeRegistry().load_pack(first)
    reg = NodeRegistry()
    registered = reg.load_pack(second)
    assert [d.type for d in registered] == ["FromSecondFolder"]
    assert "FromFirstFolder" not in reg
