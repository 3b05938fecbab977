"""The real add-on files of the shared corpus (made by other tools: diffusers' training scripts, kohya + LyCORIS,
AUTOMATIC1111, the diffusers textual-inversion script) on a model with SD 1.5's real layer sizes (random weights,
the UNet and CLIP-L text encoder built from the shipped SD 1.x configs): each is identified (kind, family, format);
each LoRA/LyCORIS file matches all its layers, changes the image (a 2-step 64×64 render through the sampler and an
SD 1.x-size VAE) and the UNet's output, and at strength 0 is the base model bit for bit; each embedding changes the
prompt's encoding. A fresh clone has no ../shared: the files whose licence allows it are kept in tests/data/addons
(the LoKr, the cloneofsimo file and a diffusers embedding), so those run everywhere; the others skip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.models.configs import load_config, load_tokenizer  # noqa: E402
from nodegraph.models.embeddings import read_embedding  # noqa: E402
from nodegraph.models.families import get_family  # noqa: E402
from nodegraph.models.identify import identify  # noqa: E402
from nodegraph.models.lora import LoraSpec, applied_loras, unload_loras  # noqa: E402
from nodegraph.models.prompt_encoder import encode_prompt  # noqa: E402
from nodegraph.models.sampling import sample  # noqa: E402
from nodegraph.models.schedulers import build_scheduler  # noqa: E402
from tests.models.addon_helpers import max_diff, report  # noqa: E402

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "models"
KEPT = Path(__file__).resolve().parents[1] / "data" / "addons"

#: file → (kind, family, variant, format, applicable)
EXPECTED = {
    "embeddings/bad-hands-5.pt": ("embedding", "sd1", None, "a1111-pt", True),
    "embeddings/EasyNegative.safetensors": ("embedding", "sd1", None, "a1111-safetensors", True),
    "embeddings/fastai_learned_embeds.bin": ("embedding", "sd1", None, "diffusers", True),
    "embeddings/a1111_test_embedding.png": ("embedding", "sd1", None, "a1111-png", True),
    "lycoris/smart_falcon_4_lokr.safetensors": ("lora", "sd1", "lokr", "lycoris", True),
    "lora/cloneofsimo_lora_disney.safetensors": ("lora", "sd1", "lora", "cloneofsimo", False),
    "lora/pokemon_pytorch_lora_weights.safetensors": ("lora", "sd1", "lora", "diffusers-attn-procs", True),
    "lora/catundchat_pytorch_lora_weights.bin": ("lora", "sd1", "lora", "diffusers-attn-procs", True),
    "lora/flower_pytorch_lora_weights.safetensors": ("lora", "sd1", "lora", "diffusers", True),
}
SD1 = get_family("sd1")


def corpus_file(name: str) -> Path:
    """The corpus file `name`, from ../shared or its copy in tests/data/addons; a skip when neither is here."""
    for path in (CORPUS / name, KEPT / Path(name).name):
        if path.is_file():
            return path
    pytest.skip(f"{name} is not here: the shared corpus ({CORPUS}) sits beside the repository on the project's "
                "machines only, and its licence does not let tests/data keep a copy")


def test_every_corpus_file_is_listed_here():
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus ({CORPUS}) is not here")
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file() and p.name != "SOURCES.md"}
    assert on_disk == set(EXPECTED), "a corpus file is new or gone: add it to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_identified(name):
    info = identify(corpus_file(name))
    assert (info.kind, info.family, info.variant, info.format) == EXPECTED[name][:4]
    assert (info.unsupported is None) == EXPECTED[name][4]


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Fill every weight with cheap random values (default initialisation of 860 M parameters takes 20 s)."""
    gen = torch.Generator().manual_seed(0)
    module.to_empty(device="cpu")
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("position_ids"):
                tensor.copy_(torch.arange(tensor.shape[-1]).expand_as(tensor))
            elif "norm" in name and name.endswith("weight"):
                tensor.fill_(1.0)
            else:
                tensor.normal_(0.0, 0.02, generator=gen)
    return module.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def sd15():
    """A UNet and text encoder with SD 1.5's real configs (860 M + 123 M parameters), random weights."""
    import diffusers
    import transformers

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(load_config("sd1", "unet"))
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**load_config("sd1", "text_encoder")))
        vae = diffusers.AutoencoderKL.from_config(load_config("sd1", "vae"))
    yield _randomised(unet), {"text_encoder": _randomised(text)}, {"tokenizer": load_tokenizer("sd1")}, \
        _randomised(vae)


def _image(sd15) -> torch.Tensor:
    """A 64×64 image in 0..255: two Euler steps of the sampler with CFG, decoded by the VAE."""
    unet, text_encoders, tokenizers, vae = sd15
    positive, negative = (encode_prompt(text, family=SD1, tokenizers=tokenizers, text_encoders=text_encoders)
                          for text in ("a photo of a cat", ""))
    with torch.no_grad():
        latents = sample(unet=unet, scheduler=build_scheduler(load_config("sd1", "scheduler"), "euler"), family=SD1,
                         positive=positive, negative=negative, seed=1, steps=2, cfg=7.0, width=64, height=64)
        pixels = vae.decode(latents / SD1.vae_scaling_factor).sample
    return ((pixels.clamp(-1, 1) + 1) * 127.5).float()


@pytest.fixture(scope="module")
def base_image(sd15):
    return _image(sd15)


def _unet_out(unet):
    gen = torch.Generator().manual_seed(7)
    latents, context = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 77, 768, generator=gen)
    with torch.no_grad():
        return unet(latents, torch.tensor(500), encoder_hidden_states=context).sample


LORAS = [name for name, expected in EXPECTED.items() if expected[0] == "lora" and expected[4]]


@pytest.mark.parametrize("name", LORAS)
def test_lora_matches_every_layer_changes_the_image_and_is_the_base_at_zero(sd15, base_image, name):
    unet, text_encoders, tokenizers, _ = sd15
    path = corpus_file(name)
    base = _unet_out(unet)
    messages = []
    try:
        with applied_loras([LoraSpec(path, 1.0, 1.0, node_id="lora")], SD1, unet, text_encoders,
                           report=lambda *m: messages.append(m)):
            applied = _unet_out(unet)
            text_applied = encode_prompt("a photo of a cat", family=SD1, tokenizers=tokenizers,
                                         text_encoders=text_encoders).embeds
            image = _image(sd15)
        with applied_loras([LoraSpec(path, 0.0, 0.0)], SD1, unet, text_encoders):
            zero = _unet_out(unet)
        after = _unet_out(unet)
    finally:
        unload_loras(unet, text_encoders)
    text_base = encode_prompt("a photo of a cat", family=SD1, tokenizers=tokenizers,
                              text_encoders=text_encoders).embeds
    assert messages, "no match report"
    for node, level, text in messages:
        matched, total = text.split(" layers matched")[0].rsplit(" ", 1)[1].split("/")
        assert (node, level) == ("lora", "info") and matched == total and int(total) > 0, text
    report(f"{name}: UNet output vs base", max_diff(applied, base))
    changed = report(f"{name}: image vs base, mean |diff| in 0..255", (image - base_image).abs().mean().item())
    assert changed > 1.0
    assert max_diff(applied, base) > 1e-4 * base.abs().max().item()
    if any("text encoder" in text for _, _, text in messages):
        assert max_diff(text_applied, text_base) > 1e-4
    assert torch.equal(zero, base) and torch.equal(after, base)
    print(*(text for _, _, text in messages), sep="\n")


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e[0] == "embedding"])
def test_embedding_changes_the_encoding(sd15, name):
    _, text_encoders, tokenizers, _ = sd15
    embedding = read_embedding(corpus_file(name))
    plain = encode_prompt("a photo of a cat", family=SD1, tokenizers=tokenizers, text_encoders=text_encoders).embeds
    used = encode_prompt("a photo of a cat, embedding:emb", family=SD1, tokenizers=tokenizers,
                         text_encoders=text_encoders, embeddings={"emb": embedding}).embeds
    assert max_diff(used, plain) > 1e-3
