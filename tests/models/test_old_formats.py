"""Older add-on formats users still own: diffusers' 2023 "attention processor" LoRAs (safetensors and pickled .bin),
AUTOMATIC1111 embeddings stored in PNGs, and bare prompt words naming an embedding of another model family.

The real files of ../shared/corpus/models are identified only (they are SD 1.5-sized); applying is checked on a tiny
SD 1.x checkpoint with an old-format LoRA made from a diffusers-format one by renaming its keys back.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import load_file, save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

from nodegraph.core import NodeError  # noqa: E402
from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.discovery import ModelFolders  # noqa: E402
from nodegraph.models.embeddings import read_embedding, read_png_embedding  # noqa: E402
from nodegraph.models.errors import CorruptModelError, IncompatibleModelError  # noqa: E402
from nodegraph.models.families import get_family  # noqa: E402
from nodegraph.models.handles import ClipHandle  # noqa: E402
from nodegraph.models.identify import identify  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.lora import (  # noqa: E402
    LoraSpec,
    adapter_name,
    applied_loras,
    check_lora,
    convert_attn_procs_lora,
)
from nodegraph.models.manager import ModelManager  # noqa: E402
from nodegraph.models.prompt_encoder import encode_prompt  # noqa: E402
from nodegraph.models.synthetic.addons import embedding_vectors  # noqa: E402
from tests.models.addon_helpers import max_diff, report, text_out, unet_out  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "models"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus ({CORPUS}) is not available here")


# --- identification of the real files -------------------------------------------------------------------------------
@needs_corpus
@pytest.mark.parametrize(("name", "kind", "family", "fmt"), [
    ("lora/pokemon_pytorch_lora_weights.safetensors", "lora", "sd1", "diffusers-attn-procs"),
    ("lora/catundchat_pytorch_lora_weights.bin", "lora", "sd1", "diffusers-attn-procs"),
    ("lora/flower_pytorch_lora_weights.safetensors", "lora", "sd1", "diffusers"),
    ("lora/cloneofsimo_lora_disney.safetensors", "lora", "sd1", "cloneofsimo"),
    ("embeddings/EasyNegative.safetensors", "embedding", "sd1", "a1111-safetensors"),
    ("embeddings/bad-hands-5.pt", "embedding", "sd1", "a1111-pt"),
    ("embeddings/fastai_learned_embeds.bin", "embedding", "sd1", "diffusers"),
    ("embeddings/a1111_test_embedding.png", "embedding", "sd1", "a1111-png"),
])
def test_corpus_files_are_identified(name, kind, family, fmt):
    info = identify(CORPUS / name)
    assert (info.kind, info.family, info.format) == (kind, family, fmt)
    assert info.to_json()["format"] == fmt


def _as_peft_names(keys):
    return {k.replace(".lora.down.", ".lora_A.").replace(".lora.up.", ".lora_B.") for k in keys}


@needs_corpus
def test_corpus_attn_procs_loras_convert_to_the_modules_of_a_diffusers_sd1_lora():
    """The old files name the same 128 SD 1.5 attention projections as the newer diffusers-format file does."""
    flower = _as_peft_names(load_file(CORPUS / "lora/flower_pytorch_lora_weights.safetensors"))
    for name in ("pokemon_pytorch_lora_weights.safetensors", "catundchat_pytorch_lora_weights.bin"):
        from nodegraph.models.safe_load import load_state_dict

        converted = convert_attn_procs_lora(load_state_dict(CORPUS / "lora" / name))
        assert set(converted) == flower, name
        assert len(converted) == 256


@needs_corpus
def test_cloneofsimo_lora_is_recognised_but_refused_clearly():
    with pytest.raises(IncompatibleModelError, match="cloneofsimo"):
        check_lora(CORPUS / "lora/cloneofsimo_lora_disney.safetensors", get_family("sd1"))


# --- applying an old-format LoRA ------------------------------------------------------------------------------------
def _to_attn_procs_name(key: str) -> str:
    """A diffusers/PEFT LoRA key under its 2023 attention-processor name."""
    key = key.replace(".lora_A.weight", "_lora.down.weight").replace(".lora_B.weight", "_lora.up.weight")
    if key.startswith("unet."):
        key = key.removeprefix("unet.").replace(".to_out.0_lora", ".to_out_lora")
        for attn in (".attn1.", ".attn2."):
            key = key.replace(attn, f"{attn}processor.")
        return key
    for proj, old in (("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"), ("out_proj", "to_out")):
        key = key.replace(f".{proj}_lora.", f".{old}_lora.")
    return key


@pytest.fixture(scope="module")
def old_loras(folder):
    """(new-format file, old .safetensors, old pickled .bin, old UNet-only .safetensors) of the same LoRA."""
    new = synthetic.write_lora(folder / "attnprocs-new.safetensors", "sd1", "peft", seed=5)
    state = load_file(new)
    old = {_to_attn_procs_name(k): v for k, v in state.items()}
    assert any(".processor.to_out_lora.down.weight" in k for k in old)
    assert any(k.startswith("text_encoder.") and ".self_attn.to_k_lora.down" in k for k in old)
    save_file(old, str(folder / "attnprocs-old.safetensors"))
    torch.save(old, folder / "attnprocs-old.bin")
    save_file({k: v for k, v in old.items() if not k.startswith("text_encoder.")},
              str(folder / "attnprocs-old-unet.safetensors"))
    new_unet = folder / "attnprocs-new-unet.safetensors"
    save_file({k: v for k, v in state.items() if k.startswith("unet.")}, str(new_unet))
    return new, folder / "attnprocs-old.safetensors", folder / "attnprocs-old.bin", \
        folder / "attnprocs-old-unet.safetensors", new_unet


def _layers(module, name):
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {})]


def _same_adapter_weights(module, a, b):
    for layer in _layers(module, a):
        assert torch.equal(layer.lora_A[a].weight, layer.lora_A[b].weight)
        assert torch.equal(layer.lora_B[a].weight, layer.lora_B[b].weight)
        assert layer.scaling[a] == layer.scaling[b]


def test_attn_procs_lora_applies_like_the_diffusers_format(sd1_path, old_loras, inputs):
    new, old_st, old_bin, old_unet, new_unet = old_loras
    for path in (old_st, old_bin, old_unet):
        info = identify(path)
        assert (info.kind, info.family, info.format) == ("lora", "sd1", "diffusers-attn-procs")
    ck = load_checkpoint(sd1_path)
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    base_unet, base_text = unet_out(ck.unet, inputs), text_out(tok, te)
    outputs = {}
    for path in (new, old_st, old_bin, old_unet, new_unet):
        with applied_loras([LoraSpec(path, 1.0, 1.0)], ck.family, ck.unet, ck.text_encoders):
            outputs[path] = unet_out(ck.unet, inputs), text_out(tok, te)
        with applied_loras([LoraSpec(path, 0.0, 0.0)], ck.family, ck.unet, ck.text_encoders):
            zero = unet_out(ck.unet, inputs), text_out(tok, te)
        assert torch.equal(zero[0], base_unet) and torch.equal(zero[1], base_text), f"{path.name} at strength 0"

    state = load_file(new)
    unet_keys = sum(1 for k in state if k.startswith("unet.") and ".lora_A." in k)
    text_keys = sum(1 for k in state if k.startswith("text_encoder.") and ".lora_A." in k)
    for path in (old_st, old_bin):
        assert len(_layers(ck.unet, adapter_name(path))) == unet_keys  # every layer matched
        assert len(_layers(te, adapter_name(path))) == text_keys
        _same_adapter_weights(ck.unet, adapter_name(path), adapter_name(new))
        _same_adapter_weights(te, adapter_name(path), adapter_name(new))
        assert torch.equal(outputs[path][0], outputs[new][0]), path.name
        assert torch.equal(outputs[path][1], outputs[new][1]), path.name
    assert len(_layers(ck.unet, adapter_name(old_unet))) == unet_keys
    assert not _layers(te, adapter_name(old_unet))
    assert torch.equal(outputs[old_unet][0], outputs[new_unet][0])
    print(f"\n[layers] UNet {unet_keys}, text encoder {text_keys}")
    report("old attn-procs vs diffusers format, UNet", max_diff(outputs[old_st][0], outputs[new][0]))
    moved = report("attn-procs LoRA vs no LoRA, UNet", max_diff(outputs[old_st][0], base_unet))
    assert moved > 1e-3
    assert max_diff(outputs[old_st][1], base_text) > 1e-4


# --- AUTOMATIC1111 embeddings in PNGs -------------------------------------------------------------------------------
def _decode_a1111_png(path):
    """An independent decoding of A1111's PNG embedding: base64 JSON, tensors as {"TORCHTENSOR": lists}."""
    data = json.loads(base64.b64decode(Image.open(path).text["sd-ti-embedding"]))
    return np.array(next(iter(data["string_to_param"].values()))["TORCHTENSOR"], dtype=np.float32)


def _write_png_embedding(path, vectors, name="tinypng"):
    data = {"string_to_token": {"*": 265}, "name": name, "step": 10, "sd_checkpoint": None,
            "sd_checkpoint_name": None, "string_to_param": {"*": {"TORCHTENSOR": vectors.tolist()}}}
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(data).encode()).decode())
    Image.new("RGB", (32, 32), (200, 100, 50)).save(path, pnginfo=info)
    return path


@needs_corpus
def test_corpus_png_embedding_vectors():
    path = CORPUS / "embeddings/a1111_test_embedding.png"
    expected = torch.from_numpy(_decode_a1111_png(path))
    embedding = read_embedding(path)
    assert embedding.base == "sd1"
    assert embedding.vectors["text_encoder"].shape == (8, 768)
    assert torch.equal(embedding.vectors["text_encoder"], expected)


def test_png_without_embedding_is_refused_and_not_listed(tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "picture.png")
    _write_png_embedding(folder / "x.preview.png", torch.zeros(1, 768))
    with pytest.raises(CorruptModelError, match="sd-ti-embedding"):
        identify(folder / "picture.png")
    with pytest.raises(CorruptModelError):
        read_png_embedding(folder / "picture.png")
    assert ModelFolders(roots=[tmp_path], include_home=False).list("embeddings") == []


@pytest.fixture(scope="module")
def addon_root(tmp_path_factory):
    """A models root with an SD 1.x PNG embedding and an SD 2.x embedding in its embeddings folder."""
    root = tmp_path_factory.mktemp("oldformats")
    (root / "embeddings").mkdir()
    vectors = embedding_vectors(768, 3, seed=11)
    _write_png_embedding(root / "embeddings" / "tinypng.png", vectors)
    synthetic.write_embedding(root / "embeddings" / "otherfam.safetensors", "safetensors", family="sd2")
    return root


def _ctx(root):
    return SimpleNamespace(models=ModelManager(ModelFolders(roots=[root], include_home=False), device="cpu",
                                               precision="fp32"))


def test_png_embedding_from_the_folder_by_name_and_in_the_embedding_node(sd1_path, addon_root):
    from nodes.conditioning import clip_text_encode
    from nodes.loaders import load_embedding

    path = addon_root / "embeddings" / "tinypng.png"
    info = identify(path)
    assert (info.kind, info.family, info.format) == ("embedding", "sd1", "a1111-png")
    embedding = read_embedding(path)
    assert torch.equal(embedding.vectors["text_encoder"], torch.from_numpy(_decode_a1111_png(path)))

    ctx = _ctx(addon_root)
    assert ctx.models.folders.list("embeddings") == ["otherfam.safetensors", "tinypng.png"]
    clip = ClipHandle(checkpoint=sd1_path, family="sd1")
    ck = ctx.models.checkpoint(sd1_path)
    kwargs = {"family": ck.family, "tokenizers": ck.tokenizers, "text_encoders": ck.text_encoders}
    reference = encode_prompt("a photo of tinypng", embeddings={"tinypng": embedding}, **kwargs).embeds
    plain = encode_prompt("a photo of tinypng", **kwargs).embeds
    for text in ("a photo of tinypng", "a photo of embedding:tinypng"):
        ours = clip_text_encode.run(ctx, clip, text)["CONDITIONING"].embeds
        assert torch.equal(ours, reference), text
    assert max_diff(reference, plain) > 1e-3

    node_clip = load_embedding.run(ctx, clip, "tinypng.png", "mytok")["CLIP"]
    ours = clip_text_encode.run(ctx, node_clip, "a photo of mytok")["CONDITIONING"].embeds
    mine = encode_prompt("a photo of mytok", embeddings={"mytok": embedding}, **kwargs).embeds
    assert torch.equal(ours, mine)


# --- an embedding of another family named in a prompt ---------------------------------------------------------------
def test_bare_word_of_another_family_is_text_with_a_warning(sd1_path, addon_root):
    from nodegraph.core.graph import Workflow
    from nodegraph.engine.cancel import CancelToken
    from nodegraph.engine.context import ExecutionContext, RunSettings
    from nodegraph.engine.events import NodeMessage
    from nodes.conditioning import clip_text_encode
    from nodes.loaders import load_embedding

    events: list = []  # the run's event sink
    ctx = ExecutionContext(run_id="r", node_id="encode", node_type="CLIPTextEncode", workflow=Workflow(),
                           settings=RunSettings(services={"models": _ctx(addon_root).models}), cancel=CancelToken(),
                           emit=events.append)
    clip = ClipHandle(checkpoint=sd1_path, family="sd1")
    ck = ctx.models.checkpoint(sd1_path)
    as_text = encode_prompt("a photo of otherfam, otherfam", family=ck.family, tokenizers=ck.tokenizers,
                            text_encoders=ck.text_encoders).embeds
    ours = clip_text_encode.run(ctx, clip, "a photo of otherfam, otherfam")["CONDITIONING"].embeds
    assert torch.equal(ours, as_text)
    # once, however often the word appears
    assert events == [NodeMessage("r", "encode", "warning", "the prompt word 'otherfam' is left as text: "
                                  "embeddings/otherfam.safetensors is an embedding for SD2 models, not SD1")]

    events.clear()
    clip_text_encode.run(ctx, clip, "a photo of otherfamily")  # only contains the name: no warning
    assert events == []

    with pytest.raises(IncompatibleModelError, match="SD2"):
        clip_text_encode.run(ctx, clip, "a photo of embedding:otherfam")
    with pytest.raises(NodeError, match="SD2"):
        load_embedding.run(ctx, clip, "otherfam.safetensors", "")
