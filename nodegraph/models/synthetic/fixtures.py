"""A whole folder of tiny model files, laid out like a ComfyUI ``models/`` folder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from nodegraph.models.synthetic.addons import write_embedding, write_hypernetwork, write_lora
from nodegraph.models.synthetic.pickles import write_malicious_pickle
from nodegraph.models.synthetic.writers import ldm_state_dict, save_checkpoint_state, write_vae

#: The file a loaded malicious pickle would create, in the fixture folder. It must never exist.
MALICIOUS_MARKER = "MALICIOUS_PICKLE_RAN"

#: key → (relative path, family, seed) of each checkpoint of the set. ``sd2`` and ``sd2-v`` differ only in weights
#: (v-prediction leaves no trace in the keys) and in their names, which follow the real files' ("512-base", "768-v").
CHECKPOINTS: dict[str, tuple[str, str, int]] = {
    "sd1": ("checkpoints/tiny-sd1.safetensors", "sd1", 0),
    "sd1.ckpt": ("checkpoints/tiny-sd1.ckpt", "sd1", 0),
    "sd1-inpaint": ("checkpoints/tiny-sd1-inpainting.safetensors", "sd1-inpaint", 0),
    "sd2": ("checkpoints/tiny-sd2-512-base.safetensors", "sd2", 0),
    "sd2-v": ("checkpoints/tiny-sd2-768-v.safetensors", "sd2-v", 1),
    "sd2-inpaint": ("checkpoints/tiny-sd2-inpainting.safetensors", "sd2-inpaint", 0),
    "sdxl-base": ("checkpoints/tiny-sdxl-base.safetensors", "sdxl-base", 0),
    "sdxl-refiner": ("checkpoints/tiny-sdxl-refiner.safetensors", "sdxl-refiner", 0),
    "sdxl-inpaint": ("checkpoints/tiny-sdxl-inpainting.safetensors", "sdxl-inpaint", 0),
}

_ADDONS: dict[str, tuple[str, Callable[[Path, torch.dtype], Path]]] = {
    "vae": ("vae/tiny-vae.safetensors", lambda p, dt: write_vae(p, "sd1", seed=1, dtype=dt)),
    "lora-sd1-kohya": ("loras/tiny-lora-sd1.safetensors", lambda p, dt: write_lora(p, "sd1", "kohya", seed=10)),
    "lora-sdxl-kohya": ("loras/tiny-lora-sdxl.safetensors",
                        lambda p, dt: write_lora(p, "sdxl-base", "kohya", seed=11)),
    "locon-sd1": ("loras/tiny-locon-sd1.safetensors", lambda p, dt: write_lora(p, "sd1", "locon", seed=12)),
    "lora-sd1-peft": ("loras/tiny-lora-sd1-peft.safetensors", lambda p, dt: write_lora(p, "sd1", "peft", seed=13)),
    "loha": ("loras/tiny-loha-sd1.safetensors", lambda p, dt: write_lora(p, "sd1", "loha", seed=14)),
    "lokr": ("loras/tiny-lokr-sd1.safetensors", lambda p, dt: write_lora(p, "sd1", "lokr", seed=15)),
    "emb-a1111-pt": ("embeddings/tiny-emb-a1111.pt", lambda p, dt: write_embedding(p, "a1111-pt", seed=20)),
    "emb-safetensors": ("embeddings/tiny-emb.safetensors",
                        lambda p, dt: write_embedding(p, "safetensors", vectors=3, seed=21)),
    "emb-diffusers": ("embeddings/tiny-emb-diffusers.safetensors",
                      lambda p, dt: write_embedding(p, "diffusers", seed=22, token="<tiny-emb-diffusers>")),
    "emb-sdxl": ("embeddings/tiny-emb-sdxl.safetensors",
                 lambda p, dt: write_embedding(p, "sdxl", family="sdxl-base", seed=23)),
    "hypernetwork": ("hypernetworks/tiny-hypernetwork.pt", lambda p, dt: write_hypernetwork(p, seed=30, dtype=dt)),
}

FIXTURE_KEYS = (*CHECKPOINTS, *_ADDONS, "malicious")


def write_fixture_set(folder: str | Path, *, dtype: torch.dtype = torch.float16,
                      only: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the tiny fixture files into `folder` and return their paths by key (see :data:`FIXTURE_KEYS`).

    Layout: ``checkpoints/``, ``loras/``, ``vae/``, ``embeddings/``, ``hypernetworks/``. Checkpoints, the VAE and the
    hypernetwork are stored in `dtype` (float16 like most published files; LoRAs and embeddings stay float32).
    ``malicious`` is ``checkpoints/tiny-malicious.ckpt``, whose pickle would create ``folder/MALICIOUS_PICKLE_RAN``.
    `only` restricts the set to some keys: the SDXL checkpoints are the big ones (their text encoders keep the
    real widths and vocabulary).
    """
    folder = Path(folder)
    wanted = list(FIXTURE_KEYS) if only is None else list(dict.fromkeys(only))
    unknown = [key for key in wanted if key not in FIXTURE_KEYS]
    if unknown:
        raise ValueError(f"unknown fixture keys {unknown}; known: {', '.join(FIXTURE_KEYS)}")
    paths: dict[str, Path] = {}
    states: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    for key in wanted:
        if key in CHECKPOINTS:
            relative, family, seed = CHECKPOINTS[key]
            if (family, seed) not in states:
                states.clear()  # keep at most one state dict in memory (SDXL's is ~800 MB in float32)
                states[(family, seed)] = ldm_state_dict(family, seed)
            step = 875000 if family == "sd2-v" else 840000
            paths[key] = save_checkpoint_state(folder / relative, states[(family, seed)], dtype=dtype,
                                               global_step=step)
        elif key in _ADDONS:
            relative, write = _ADDONS[key]
            paths[key] = write(folder / relative, dtype)
        else:
            paths[key] = write_malicious_pickle(folder / "checkpoints" / "tiny-malicious.ckpt",
                                                folder / MALICIOUS_MARKER)
    return paths
