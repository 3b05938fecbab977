"""AUTOMATIC1111 / Forge infotext (the ``parameters`` text of their images, or the same text pasted) opened as a
nodegraph workflow: Load Checkpoint (→ VAE Override) → LoRA… → Hypernetwork… → CLIP Skip → CLIP Text Encode ×2 →
Empty Latent Image → UNet Sampler (→ Upscale Latent → UNet Sampler for hires fix) → VAE Decode → Save Image.

Models are looked up by name and hash in the user's folders (:mod:`nodegraph.interop.model_lookup`). Every field the
graph does not carry becomes one warning line; nothing is dropped silently, and a sampler or schedule nodegraph
does not run is kept as written so validation refuses it by name rather than running something else.
"""

from __future__ import annotations

import re

from nodegraph.core.graph import Workflow
from nodegraph.interop.comfyui_nodes import our_schedule
from nodegraph.interop.image_text import ExtraNetwork, Infotext, extract_networks, parse_infotext
from nodegraph.interop.model_lookup import HashCache, find_model, name_key
from nodegraph.interop.result import ImportResult, ModelCatalog

__all__ = ["SAMPLER_NAMES", "ExtraNetwork", "Infotext", "extract_networks", "hires_schedule", "import_infotext",
           "parse_infotext", "sampler_and_schedule"]

SOURCE = "AUTOMATIC1111 infotext"

#: AUTOMATIC1111 sampler labels → nodegraph sampler names (``nodegraph.models.schedulers.SAMPLERS``; a test keeps
#: the two in step).
SAMPLER_NAMES: dict[str, str] = {
    "Euler": "euler", "Euler a": "euler_ancestral", "Heun": "heun", "DPM2": "dpm_2", "DPM2 a": "dpm_2_ancestral",
    "LMS": "lms", "DPM++ 2M": "dpmpp_2m", "DPM++ 2M SDE": "dpmpp_2m_sde", "DPM++ SDE": "dpmpp_sde", "DDIM": "ddim",
    "PLMS": "pndm", "UniPC": "uni_pc", "DEIS": "deis", "LCM": "lcm",
}
#: The schedules nodegraph runs under AUTOMATIC1111's names (``nodegraph.models.schedulers.SCHEDULES``).
SCHEDULE_NAMES = frozenset({"normal", "karras", "exponential", "sgm_uniform", "beta", "simple", "ddim_uniform",
                            "kl_optimal"})
#: "Schedule type" labels (case-folded) → schedule names; those nodegraph lacks get ComfyUI's name, which validation
#: then refuses, naming it.
_SCHEDULE_TYPES = {
    "uniform": "normal", "normal": "normal", "karras": "karras", "exponential": "exponential",
    "polyexponential": "exponential", "sgm uniform": "sgm_uniform", "sgmuniform": "sgm_uniform", "beta": "beta",
    "simple": "simple", "ddim": "ddim_uniform", "align your steps": "align_your_steps", "kl optimal": "kl_optimal",
}
#: Old sampler labels carry the schedule: "DPM++ 2M Karras".
_LABEL_SUFFIXES = ("Karras", "Exponential", "SGM Uniform", "SGMUniform")
#: The schedule AUTOMATIC1111 1.9+ uses for "Automatic" (its sampler table's ``scheduler`` option); others: uniform.
_AUTOMATIC = {"dpmpp_2m": "karras", "dpmpp_sde": "karras", "dpmpp_2m_sde": "exponential", "dpm_2": "karras",
              "dpm_2_ancestral": "karras"}
#: "Hires upscaler" latent modes → (Upscale Latent method, why it is not exact or None).
_LATENT_UPSCALERS = {
    "Latent": ("bilinear", None),
    "Latent (antialiased)": ("bilinear", "Upscale Latent does not antialias"),
    "Latent (bicubic)": ("bicubic", None),
    "Latent (bicubic antialiased)": ("bicubic", "Upscale Latent does not antialias"),
    "Latent (nearest)": ("nearest-exact", "torch's 'nearest' picks slightly different cells than 'nearest-exact'"),
    "Latent (nearest-exact)": ("nearest-exact", None),
}
#: AUTOMATIC1111's built-in pixel upscalers → the model file it downloads for each (found in the upscale folders).
_UPSCALER_FILES = {
    "R-ESRGAN 4x+": "RealESRGAN_x4plus", "R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B",
    "R-ESRGAN 2x+": "RealESRGAN_x2plus", "R-ESRGAN General 4xV3": "realesr-general-x4v3",
    "R-ESRGAN General WDN 4xV3": "realesr-general-wdn-x4v3", "R-ESRGAN AnimeVideo": "realesr-animevideov3",
    "ESRGAN_4x": "ESRGAN_4x", "SwinIR 4x": "SwinIR_4x",
}
#: Pixel upscalers that are plain resampling → Upscale Image's method.
_RESAMPLERS = {"Lanczos": "lanczos", "Nearest": "nearest-exact", "None": "lanczos"}
#: Upscalers with no counterpart here, and why.
_UNSUPPORTED_UPSCALERS = {"LDSR": "LDSR (a latent diffusion upscaler) is not supported",
                          "ScuNET GAN": "ScuNET is a denoiser, not an upscaler", "ScuNET PSNR": "ScuNET is a "
                          "denoiser, not an upscaler"}
#: Fields the graph carries.
HONOURED = frozenset({
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "Clip skip", "VAE",
    "VAE hash", "Denoising strength", "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler",
    "Hires sampler", "Hires schedule type", "Hires CFG Scale", "Lora hashes", "TI hashes", "Batch size",
})
#: Why some common fields are not carried (others get a generic reason).
_REASONS = {
    "ENSD": "nodegraph's ancestral/SDE noise comes from the seed alone (no eta noise seed delta)",
    "Eta noise seed delta": "nodegraph's ancestral/SDE noise comes from the seed alone (no eta noise seed delta)",
    "Version": "the version of the program that wrote it", "RNG": "nodegraph draws noise on the CPU from the seed",
    "Hashes": "models are looked up by name and Model hash / Lora hashes / TI hashes",
    "Face restoration": "nodegraph has no face restoration node", "Variation seed": "no variation seeds",
    "Variation seed strength": "no variation seeds", "Seed resize from": "no seed resizing",
    "Eta": "the sampler's eta is not adjustable", "NGMS": "no negative guidance minimum sigma",
    "Template": "the style template; the prompt already holds its text", "Negative Template": "the style template",
    "Hires prompt": "the hires pass uses the main prompt", "Hires negative prompt": "the hires pass uses the main "
    "negative prompt", "Hires checkpoint": "the hires pass uses the main checkpoint",
}


def sampler_and_schedule(sampler: str, schedule_type: str | None = None) -> tuple[str, str, list[str]]:
    """nodegraph's (sampler_name, scheduler) for an AUTOMATIC1111 "Sampler" label and optional "Schedule type",
    with warnings. A sampler nodegraph does not run is kept verbatim, so validation refuses it by name."""
    warnings: list[str] = []
    label = base = sampler.strip()
    schedule = None
    for suffix in _LABEL_SUFFIXES:
        if base not in SAMPLER_NAMES and base.endswith(f" {suffix}"):
            base, schedule = base[: -len(suffix) - 1], _SCHEDULE_TYPES[suffix.casefold()]
    name = SAMPLER_NAMES.get(base) or (base if base in SAMPLER_NAMES.values() else None)
    if name is None:
        name, schedule = label, schedule or "normal"
        warnings.append(f"Sampler: {label} — nodegraph has no such sampler; kept as written, so validation refuses "
                        f"it until you pick one ({', '.join(SAMPLER_NAMES)})")
    if schedule_type and schedule_type.strip():
        wanted = schedule_type.strip()
        if wanted.casefold() == "automatic":
            schedule = _AUTOMATIC.get(name, "normal")
        else:
            schedule = _SCHEDULE_TYPES.get(wanted.casefold(), wanted)
            if wanted.casefold() == "polyexponential":
                warnings.append("Schedule type: Polyexponential — imported as Exponential (the same with "
                                "AUTOMATIC1111's default rho 1; another rho is not carried over)")
    if name == "uni_pc":
        warnings.append("UniPC: AUTOMATIC1111 runs its bh1 variant by default, nodegraph's UniPC is the bh2 variant "
                        "(diffusers' and ComfyUI's uni_pc_bh2): the image differs")
    schedule = schedule or "normal"
    if schedule not in SCHEDULE_NAMES:
        known = ", ".join(sorted(SCHEDULE_NAMES))
        warnings.append(f"Schedule type: {schedule_type or schedule} — nodegraph has no such schedule; kept as "
                        f"{schedule!r}, so validation refuses it until you pick one ({known})")
    elif schedule != "beta":  # AUTOMATIC1111's schedules are k-diffusion's, ComfyUI's formulas; its Beta is its own
        schedule = our_schedule(name, schedule)
    return name, schedule, warnings


def _pairs(value: str) -> dict[str, str]:
    """``"a: 1234, b: 5678"`` → {"a": "1234", "b": "5678"} (the Lora hashes / TI hashes format)."""
    pairs = (item.rsplit(":", 1) for item in value.split(",") if ":" in item)
    return {name.strip(): digest.strip() for name, digest in pairs}


def _size(raw: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", raw or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _shorten(value: str, limit: int = 100) -> str:
    value = value.replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def hires_schedule(steps: int, denoise: float) -> int:
    """The UNet Sampler steps that make a hires pass at `denoise` run `steps` steps as AUTOMATIC1111 does: it
    samples the last `steps` steps of a schedule of ``steps / denoise`` steps, and the sampler runs the last
    ``int(total * denoise)`` steps of `total`."""
    if denoise <= 0:
        return steps
    total = int(steps / min(denoise, 0.999))
    while int(total * denoise) < steps and total < 10000:
        total += 1
    return total


def import_infotext(text: str, catalog: ModelCatalog | None = None, *, source: str = SOURCE) -> ImportResult:
    """Build a nodegraph workflow from AUTOMATIC1111 / Forge infotext (see the module docstring for the graph).

    `catalog` (the user's model folders) is where checkpoint, LoRA, hypernetwork, embedding and VAE names and hashes
    are looked up; without one, names are taken as written and a warning says they were not checked.
    """
    return _Import(parse_infotext(text), catalog).build(source)


class _Import:
    """One import: the parsed text, the workflow being laid out left to right, and the warnings."""

    _STEP = 420  # canvas units between columns

    def __init__(self, info: Infotext, catalog: ModelCatalog | None):
        self.info, self.params, self.catalog = info, info.params, catalog
        self.cache = HashCache() if catalog is not None else None
        self.workflow = Workflow()
        self.warnings: list[str] = []
        self.x = 0
        self.size = (512, 512)
        self.vae = ("ckpt", "VAE")  # the VAE that decodes, set by loaders()

    def warn(self, line: str | None) -> None:
        if line and line not in self.warnings:
            self.warnings.append(line)

    def node(self, node_id: str, type_id: str, inputs: dict, y: int = 0, title: str | None = None) -> str:
        self.workflow.add_node(type_id, node_id, inputs=inputs, title=title, ui={"pos": [self.x, y]})
        return node_id

    def link(self, source: tuple[str, str], target: str, port: str) -> None:
        self.workflow.connect(source[0], source[1], target, port)

    def number(self, key: str, cast, default):
        raw = self.params.get(key)
        if raw is None or not raw.strip():
            return default
        try:
            return cast(raw.strip())
        except ValueError:
            self.warn(f"{key}: {raw} — not a number; using {default}")
            return default

    def model(self, kind: str, name: str | None, digest: str | None, label: str) -> str | None:
        """The catalog name for a model reference, or None (with a warning) when it is not found."""
        if self.catalog is None:
            self.warn("No model folders were given: model names are taken as written and not checked")
            return None
        match = find_model(self.catalog, kind, name, digest, cache=self.cache, label=label)
        self.warn(match.warning)
        return match.name

    def build(self, source: str) -> ImportResult:
        self.workflow.meta["imported_from"] = source
        try:
            model, clip, vae = self.loaders()
            self.vae = vae
            self.x += self._STEP
            positive, negative, latent = self.encoders(clip)
            self.x += self._STEP
            samples = self.sampling(model, positive, negative, latent)
            self.x += self._STEP
            self.node("decode", "VAEDecode", {})
            self.link(samples, "decode", "samples")
            self.link(vae, "decode", "vae")
            self.x += self._STEP
            self.node("save", "SaveImage", {"filename_prefix": "nodegraph"})
            self.link(("decode", "IMAGE"), "save", "images")
            self.leftovers()
        finally:
            if self.cache is not None:
                self.cache.save()
        return ImportResult(self.workflow, source, self.warnings)

    def loaders(self) -> tuple[tuple[str, str], tuple[str, str], tuple[str, str]]:
        name, digest = self.params.get("Model"), self.params.get("Model hash")
        found = self.model("checkpoints", name, digest, "Model") if name or digest else None
        ckpt_name = found or (f"{name}.safetensors" if name else digest)
        if not ckpt_name:
            self.warn("The infotext names no checkpoint (no Model or Model hash): pick one in Load Checkpoint")
        self.node("ckpt", "LoadCheckpoint", {"ckpt_name": ckpt_name} if ckpt_name else {})
        model, clip, vae = ("ckpt", "MODEL"), ("ckpt", "CLIP"), ("ckpt", "VAE")
        vae_name, vae_hash = self.params.get("VAE"), self.params.get("VAE hash")
        if (vae_name and vae_name.strip() not in ("None", "Automatic")) or vae_hash:
            found = self.model("vae", vae_name, vae_hash, "VAE")
            if found:
                vae = (self.node("vae", "LoadVAE", {"vae_name": found}, y=420), "VAE")
            else:
                self.warn(f"VAE: {vae_name or vae_hash} — not found; the checkpoint's own VAE decodes instead")
        prompt, networks, warnings = extract_networks(self.info.prompt)
        self.info.prompt = prompt
        for line in warnings:
            self.warn(line)
        lora_hashes = {name_key(k): v for k, v in _pairs(self.params.get("Lora hashes", "")).items()}
        count = {"lora": 0, "hypernet": 0}
        for net in networks:
            count[net.kind] += 1
            self.x += self._STEP
            node_id = net.kind if count[net.kind] == 1 else f"{net.kind}_{count[net.kind]}"
            if net.kind == "lora":
                found = self.model("loras", net.name, lora_hashes.get(name_key(net.name)), "LoRA")
                inputs = {"lora_name": found or _file_name(net.name), "strength_model": net.unet,
                          "strength_clip": net.te}
                self.node(node_id, "LoadLoRA", inputs)
                self.link(clip, node_id, "clip")
                clip = (node_id, "CLIP")
            else:
                found = self.model("hypernetworks", net.name, None, "hypernetwork")
                self.node(node_id, "LoadHypernetwork", {"hypernetwork_name": found or _file_name(net.name),
                                                        "strength": net.te})
            self.link(model, node_id, "model")
            model = (node_id, "MODEL")
        clip_skip = self.number("Clip skip", int, 1)
        if clip_skip > 1:
            self.x += self._STEP
            self.link(clip, self.node("clip_skip", "CLIPSetLastLayer", {"stop_at_clip_layer": -clip_skip}), "clip")
            clip = ("clip_skip", "CLIP")
        for embedding, digest in _pairs(self.params.get("TI hashes", "")).items():
            if self.catalog is not None and not self.model("embeddings", embedding, digest, "embedding"):
                self.warn(f"Embedding {embedding!r}: without the file, the word stays plain text in the prompt")
        return model, clip, vae

    def encoders(self, clip: tuple[str, str]) -> tuple[tuple[str, str], tuple[str, str], tuple[str, str]]:
        negative_text, networks, _ = extract_networks(self.info.negative_prompt)
        if networks:
            self.warn("Extra networks in the negative prompt are not applied; removed from it")
        for node_id, text, y in (("positive", self.info.prompt, -160), ("negative", negative_text, 160)):
            self.node(node_id, "CLIPTextEncode", {"text": text}, y=y, title=f"{node_id.capitalize()} prompt")
            self.link(clip, node_id, "clip")
        width, height = _size(self.params.get("Size", "")) or (512, 512)
        if "Size" in self.params and not _size(self.params["Size"]):
            self.warn(f"Size: {self.params['Size']} — not WIDTHxHEIGHT; using 512x512")
        if width % 8 or height % 8:
            self.warn(f"Size: {width}x{height} — rounded down to multiples of 8 for the latent")
            width, height = width // 8 * 8, height // 8 * 8
        batch = self.number("Batch size", int, 1)
        if not 1 <= batch <= 64:
            self.warn(f"Batch size: {batch} — outside 1…64; using 1")
            batch = 1
        elif batch > 1:
            self.warn(f"Batch size: {batch} — AUTOMATIC1111 seeds image i with Seed+i; nodegraph draws the whole "
                      "batch from one seed, so the other images differ")
        self.node("latent", "EmptyLatentImage", {"width": width, "height": height, "batch_size": batch}, y=420)
        self.size = (width, height)
        return ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT")

    def sampling(self, model, positive, negative, latent) -> tuple[str, str]:
        sampler_label, schedule_label = self.params.get("Sampler", "Euler"), self.params.get("Schedule type")
        if "Sampler" not in self.params:
            self.warn("The infotext names no sampler: using Euler")
        name, schedule, warnings = sampler_and_schedule(sampler_label, schedule_label)
        for line in warnings:
            self.warn(line)
        seed, steps = self.number("Seed", int, 0), self.number("Steps", int, 20)
        cfg = self.number("CFG scale", float, 7.0)
        if seed < 0:
            self.warn(f"Seed: {seed} — negative; using 0")
            seed = 0
        common = {"seed": seed, "cfg": cfg, "sampler_name": name, "scheduler": schedule}
        self.node("sample", "UNetSampler", {**common, "steps": steps, "denoise": 1.0})
        for port, source in (("model", model), ("positive", positive), ("negative", negative),
                             ("latent_image", latent)):
            self.link(source, "sample", port)
        hires = any(key in self.params for key in ("Hires upscale", "Hires resize", "Hires upscaler", "Hires steps"))
        if not hires:
            if "Denoising strength" in self.params:
                self.warn(f"Denoising strength: {self.params['Denoising strength']} — this is img2img/inpainting, "
                          "whose source image is not in the text: imported as text to image (add Load Image → VAE "
                          "Encode and lower the sampler's denoise yourself)")
            return ("sample", "LATENT")
        return self.hires(model, positive, negative, common, steps)

    def hires(self, model, positive, negative, common: dict, steps: int) -> tuple[str, str]:
        width, height = self.size
        resize, crop = _size(self.params.get("Hires resize", "")), {}
        if resize and any(resize):
            target_w, target_h = resize
            target_w = target_w or round(target_h * width / height)
            target_h = target_h or round(target_w * height / width)
            if abs(target_w / target_h - width / height) > 0.01:
                crop = {"crop": "center"}  # AUTOMATIC1111 scales to cover the new size and cuts the middle out
        else:
            scale = self.number("Hires upscale", float, 2.0)
            target_w, target_h = int(width * scale), int(height * scale)
        upscaler = self.params.get("Hires upscaler", "Latent").strip()
        size = {"width": max(64, target_w // 8 * 8), "height": max(64, target_h // 8 * 8)}
        if upscaler in _LATENT_UPSCALERS or upscaler in _UNSUPPORTED_UPSCALERS:
            method, why = _LATENT_UPSCALERS.get(upscaler, ("bilinear", None))
            if upscaler in _UNSUPPORTED_UPSCALERS:
                why = f"{_UNSUPPORTED_UPSCALERS[upscaler]}; imported as a bilinear latent upscale, which is softer"
            if why:
                self.warn(f"Hires upscaler: {upscaler} — {why}")
            self.node("upscale", "UpscaleLatent", {"upscale_method": method, **size, **crop}, y=420)
            self.link(("sample", "LATENT"), "upscale", "samples")
            upscaled = ("upscale", "LATENT")
        else:
            upscaled = self.pixel_upscale(upscaler, size, crop)
        self.x += self._STEP
        denoise = self.number("Denoising strength", float, 0.7)
        if "Denoising strength" not in self.params:
            self.warn("Hires fix without Denoising strength: using AUTOMATIC1111's default 0.7")
        hires_steps = self.number("Hires steps", int, 0) or steps
        sampler = dict(common, cfg=self.number("Hires CFG Scale", float, common["cfg"]))
        label, kind = self.params.get("Hires sampler", "Use same sampler"), self.params.get("Hires schedule type",
                                                                                           "Use same scheduler")
        if (label, kind) != ("Use same sampler", "Use same scheduler"):
            same_label, same_kind = label == "Use same sampler", kind == "Use same scheduler"
            name, schedule, warnings = sampler_and_schedule(
                self.params.get("Sampler", "Euler") if same_label else label,
                self.params.get("Schedule type") if same_kind else kind)
            sampler.update(sampler_name=name, scheduler=schedule)
            for line in warnings:
                self.warn(line)
        total = hires_schedule(hires_steps, denoise)
        title = f"Hires pass ({hires_steps} of {total} steps)" if total != hires_steps else "Hires pass"
        self.node("refine", "UNetSampler", {**sampler, "steps": total, "denoise": denoise}, title=title)
        for port, source in (("model", model), ("positive", positive), ("negative", negative),
                             ("latent_image", upscaled)):
            self.link(source, "refine", port)
        return ("refine", "LATENT")

    def pixel_upscale(self, upscaler: str, size: dict, crop: dict) -> tuple[str, str]:
        """AUTOMATIC1111's hires fix with a pixel upscaler: decode, upscale the image (with the upscale model, or by
        resampling for Lanczos/Nearest), resize it to the hires size, encode again."""
        self.node("hires_decode", "VAEDecode", {}, y=420)
        self.link(("sample", "LATENT"), "hires_decode", "samples")
        self.link(self.vae, "hires_decode", "vae")
        image = ("hires_decode", "IMAGE")
        if upscaler not in _RESAMPLERS:
            self.x += self._STEP
            wanted = _UPSCALER_FILES.get(upscaler, upscaler)
            found = self.model("upscale_models", wanted, None, "Hires upscaler")
            # not found: named as AUTOMATIC1111's file (.pth), so validation reports it missing and says where it looked
            placeholder = wanted if name_key(wanted) != wanted.strip().casefold() else f"{wanted}.pth"
            self.node("upscaler", "LoadUpscaleModel", {"model_name": found or placeholder}, y=560)
            self.node("upscale_image", "UpscaleImageWithModel", {}, y=420)
            self.link(("upscaler", "UPSCALE_MODEL"), "upscale_image", "upscale_model")
            self.link(image, "upscale_image", "image")
            image = ("upscale_image", "IMAGE")
        elif upscaler == "None":
            self.warn("Hires upscaler: None — AUTOMATIC1111 then only resizes: imported as a Lanczos resize")
        self.x += self._STEP
        self.node("resize", "ImageScale", {"upscale_method": _RESAMPLERS.get(upscaler, "lanczos"), **size,
                                           "crop": crop.get("crop", "disabled")}, y=420)
        self.link(image, "resize", "image")
        self.x += self._STEP
        self.node("hires_encode", "VAEEncode", {}, y=420)
        self.link(("resize", "IMAGE"), "hires_encode", "pixels")
        self.link(self.vae, "hires_encode", "vae")
        return ("hires_encode", "LATENT")

    def leftovers(self) -> None:
        for key, value in self.params.items():
            if key not in HONOURED:
                reason = _REASONS.get(key, "not supported by nodegraph (an option or an extension's field)")
                self.warn(f"{key}: {_shorten(value)} — ignored: {reason}")
        for piece in self.info.unparsed:
            self.warn(f"{_shorten(piece)!r} — not a 'Key: value' field; ignored")


def _file_name(name: str) -> str:
    """A placeholder file name for a model that was not found (validation then reports it missing)."""
    return name if name_key(name) != name.strip().casefold() else f"{name}.safetensors"
