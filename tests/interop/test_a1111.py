"""AUTOMATIC1111 / Forge infotext imported as nodegraph workflows: the real PNGs of the shared corpus, synthetic
infotexts for each rule (LoRA syntax, hires fix, samplers and schedules, ignored fields), validation against the real
registry with the named model files present, and infotext read from PNG text chunks and JPEG/WebP Exif."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from nodegraph.core.validate import validate
from nodegraph.core.workflow_io import dumps, loads
from nodegraph.images import a1111_parameters
from nodegraph.interop import InteropError
from nodegraph.interop.a1111 import SAMPLER_NAMES, SCHEDULE_NAMES, hires_schedule, import_infotext, parse_infotext
from nodegraph.interop.image_text import decode_user_comment, read_infotext
from nodegraph.models.discovery import ModelFolders, file_check
from nodegraph.packs import create_registry

ROOT = Path(__file__).resolve().parents[2]
PNGS = ROOT.parent / "shared" / "corpus" / "png"


def corpus_png(name: str) -> Path:
    """A PNG of the shared corpus, or a skip when the corpus is absent (a fresh clone)."""
    path = PNGS / name
    if not path.is_file():
        pytest.skip(f"the shared corpus ({PNGS}) is not here: it sits beside the repository on the project's "
                    "machines only")
    return path


@pytest.fixture(scope="module")
def registry():
    return create_registry(user_packs=False)


def models(root: Path, files: dict[str, list[str]]) -> ModelFolders:
    """A model folder laid out like AUTOMATIC1111's, with small dummy files under the given names."""
    folder = {"checkpoints": "models/Stable-diffusion", "loras": "models/Lora", "vae": "models/VAE",
              "hypernetworks": "models/hypernetworks", "embeddings": "embeddings", "upscale_models": "models/ESRGAN"}
    for kind, names in files.items():
        for name in names:
            path = root / folder[kind] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"dummy {kind} {name}".encode())
    return ModelFolders([root], include_home=False)


def problems(workflow, registry, catalog=None) -> list[tuple[str, str | None, str | None]]:
    check = file_check(catalog) if catalog is not None else None
    return [(p.code, p.node_id, p.port) for p in validate(workflow, registry, file_check=check)]


def inputs(result, node_id: str) -> dict:
    return result.workflow.node(node_id).inputs


def links(result) -> set[tuple[str, str, str, str]]:
    return {(ln.from_node, ln.from_output, ln.to_node, ln.to_input) for ln in result.workflow.links}


def warned(result, *words: str) -> list[str]:
    return [w for w in result.warnings if all(word in w for word in words)]


BASIC = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"


# --- the real corpus ------------------------------------------------------------------------------------------------
def test_cutoff_sample_2_imports_exactly(tmp_path, registry):
    text = read_infotext(corpus_png("a1111_cutoff_sample-2.png"))
    catalog = models(tmp_path, {"checkpoints": ["7th_anime_v3_A-fp16.safetensors"]})
    result = import_infotext(text, catalog)
    sample = inputs(result, "sample")
    assert (sample["seed"], sample["steps"], sample["cfg"]) == (3162372422, 15, 7.0)
    assert (sample["sampler_name"], sample["scheduler"], sample["denoise"]) == ("dpmpp_2m", "comfyui_karras", 1.0)
    assert inputs(result, "latent") == {"width": 512, "height": 768, "batch_size": 1}
    assert inputs(result, "ckpt") == {"ckpt_name": "7th_anime_v3_A-fp16.safetensors"}
    assert inputs(result, "positive")["text"] == ("a cute girl, white shirt with green tie, red shoes, blue hair, "
                                                  "yellow eyes, pink skirt")
    assert inputs(result, "negative")["text"] == "(low quality, worst quality:1.4), nsfw"
    assert "clip_skip" not in result.workflow
    assert warned(result, "ENSD", "31337")
    assert warned(result, "7th_anime_v3_A-fp16", "5b8393ca08", "hash differs")  # our dummy is not the real file
    assert len(result.warnings) == 2, result.warnings
    assert problems(result.workflow, registry, catalog) == []


def test_daam_png_imports_exactly(tmp_path, registry):
    result = import_infotext(read_infotext(corpus_png("daam_00006-2623256163.png")))
    sample = inputs(result, "sample")
    assert (sample["seed"], sample["steps"], sample["cfg"]) == (2623256163, 20, 10.0)
    assert (sample["sampler_name"], sample["scheduler"]) == ("dpmpp_2m", "comfyui_karras")
    assert inputs(result, "latent") == {"width": 768, "height": 768, "batch_size": 1}
    assert inputs(result, "clip_skip") == {"stop_at_clip_layer": -2}
    assert {("ckpt", "CLIP", "clip_skip", "clip"), ("clip_skip", "CLIP", "positive", "clip"),
            ("clip_skip", "CLIP", "negative", "clip")} <= links(result)
    assert inputs(result, "ckpt") == {"ckpt_name": "2c02b20a"}  # no Model name: the old 8-hex hash stands in
    assert inputs(result, "positive")["text"] == "A photo of a cute cat wearing sunglasses relaxing on a beach"
    assert inputs(result, "negative")["text"] == ""
    assert warned(result, "ENSD", "31337")
    assert problems(result.workflow, registry) == []

    catalog = models(tmp_path, {"checkpoints": ["unrelated.safetensors"]})
    result = import_infotext(read_infotext(corpus_png("daam_00006-2623256163.png")), catalog)
    assert warned(result, "2c02b20a", "not found in your model folders")
    assert problems(result.workflow, registry, catalog) == [("missing_file", "ckpt", "ckpt_name")]


# --- parsing --------------------------------------------------------------------------------------------------------
def test_multi_line_prompts_quoted_values_and_windows_line_endings():
    text = ("masterpiece, a cat,  \r\nsitting on a mat\r\nNegative prompt: lowres,\r\nbad hands  \r\n"
            'Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, Size: 640x448, '
            'Lora hashes: "a: 1234abcd5678, b: 5678", TI hashes: "emb: 0011", Template: "x: y, \\"z\\"", '
            'Model: m  \r\n')
    info = parse_infotext(text)
    assert info.prompt == "masterpiece, a cat,\nsitting on a mat"
    assert info.negative_prompt == "lowres,\nbad hands"
    assert list(info.params) == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Lora hashes",
                                 "TI hashes", "Template", "Model"]
    assert info.params["Lora hashes"] == "a: 1234abcd5678, b: 5678"
    assert info.params["Template"] == 'x: y, "z"'
    assert info.params["Model"] == "m"


def test_prompt_without_negative_and_the_last_steps_line_wins():
    info = parse_infotext("Steps: 3 is in my prompt\nSteps: 5, Seed: 9")
    assert info.prompt == "Steps: 3 is in my prompt" and info.negative_prompt == ""
    assert info.params == {"Steps": "5", "Seed": "9"}
    assert parse_infotext("Negative prompt: only negative\nSteps: 5").prompt == ""


def test_text_without_a_parameters_line_is_refused():
    for text in ("just a prompt", "a cat\nNegative prompt: dog", ""):
        with pytest.raises(InteropError, match="not AUTOMATIC1111 infotext"):
            import_infotext(text)


def test_our_own_save_image_parameters_read_back():
    text = a1111_parameters({"prompt": "a fox <lora:fur:0.7>", "negative_prompt": "blur", "Steps": 12,
                             "Sampler": "DPM++ SDE", "Schedule type": "Karras", "CFG scale": "5.5", "Seed": 7,
                             "Size": "512x768", "Model hash": "0123456789", "Model": "dream", "Clip skip": 2})
    result = import_infotext(text)
    assert inputs(result, "sample") == {"seed": 7, "cfg": 5.5, "sampler_name": "dpmpp_sde",
                                        "scheduler": "comfyui_karras", "steps": 12, "denoise": 1.0}
    assert inputs(result, "lora") == {"lora_name": "fur.safetensors", "strength_model": 0.7, "strength_clip": 0.7}
    assert warned(result, "Version: nodegraph")


# --- LoRAs, hypernetworks, CLIP skip --------------------------------------------------------------------------------
def test_lora_and_hypernetwork_tags_become_a_chain():
    text = ("a <lora:a:0.8> cat, <lora:b:1:0.5>, <lora:c:te=0.3:unet=0.7> <lyco:d:0.4> <hypernet:h:0.6> (fur:1.2)\n"
            "Steps: 20, Sampler: Euler, Seed: 5, Size: 512x512, Clip skip: 3")
    result = import_infotext(text)
    assert inputs(result, "positive")["text"] == "a cat,, (fur:1.2)"  # the same tokens as A1111's "a  cat, ,  (…"
    strengths = {n: (inputs(result, n)["lora_name"], inputs(result, n)["strength_clip"],
                     inputs(result, n)["strength_model"]) for n in ("lora", "lora_2", "lora_3", "lora_4")}
    assert strengths == {"lora": ("a.safetensors", 0.8, 0.8), "lora_2": ("b.safetensors", 1.0, 0.5),
                         "lora_3": ("c.safetensors", 0.3, 0.7), "lora_4": ("d.safetensors", 0.4, 0.4)}
    assert inputs(result, "hypernet") == {"hypernetwork_name": "h.safetensors", "strength": 0.6}
    chain = links(result)
    assert {("ckpt", "MODEL", "lora", "model"), ("lora_4", "MODEL", "hypernet", "model"),
            ("hypernet", "MODEL", "sample", "model"), ("lora_4", "CLIP", "clip_skip", "clip"),
            ("ckpt", "CLIP", "lora", "clip"), ("lora", "CLIP", "lora_2", "clip")} <= chain
    assert inputs(result, "clip_skip") == {"stop_at_clip_layer": -3}
    xs = [result.workflow.node(n).ui["pos"][0] for n in ("ckpt", "lora", "lora_4", "hypernet", "clip_skip",
                                                          "positive", "sample", "decode", "save")]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # laid out left to right


def test_unsupported_extra_networks_and_lora_options_warn():
    result = import_infotext("x <lora:a:1:1:8> <lora:b:lbw=OUTALL> <controlnet:z>\nSteps: 5")
    assert warned(result, "<lora:a:1:1:8>", "8 ignored")
    assert warned(result, "<lora:b:lbw=OUTALL>", "lbw=OUTALL ignored")
    assert warned(result, "controlnet", "not supported")
    assert inputs(result, "positive")["text"] == "x"


# --- samplers and schedules -----------------------------------------------------------------------------------------
def test_sampler_table_matches_the_samplers_we_run():
    from nodegraph.models.schedulers import SAMPLERS, SCHEDULES

    assert {spec.label: name for name, spec in SAMPLERS.items()} == SAMPLER_NAMES
    assert set(SCHEDULES) >= SCHEDULE_NAMES


# AUTOMATIC1111's schedules are k-diffusion's, which are ComfyUI's formulas: the comfyui_* schedules wherever the
# sampler can step through them (PLMS cannot); its Beta is its own formula, diffusers' plain beta.
@pytest.mark.parametrize(("sampler", "schedule_type", "expected"), [
    ("Euler a", None, ("euler_ancestral", "comfyui_normal")),
    ("DPM++ 2M Karras", None, ("dpmpp_2m", "comfyui_karras")),
    ("DPM++ 2M SDE Exponential", None, ("dpmpp_2m_sde", "comfyui_exponential")),
    ("DPM++ 2M SGM Uniform", None, ("dpmpp_2m", "comfyui_sgm_uniform")),
    ("DPM2 a Karras", None, ("dpm_2_ancestral", "comfyui_karras")),
    ("PLMS", None, ("pndm", "normal")),
    ("DPM++ 2M", "Karras", ("dpmpp_2m", "comfyui_karras")),
    ("DPM++ 2M", "Automatic", ("dpmpp_2m", "comfyui_karras")),
    ("DPM++ 2M SDE", "Automatic", ("dpmpp_2m_sde", "comfyui_exponential")),
    ("Euler", "Automatic", ("euler", "comfyui_normal")),
    ("Euler", "Uniform", ("euler", "comfyui_normal")),
    ("Euler", "SGM Uniform", ("euler", "comfyui_sgm_uniform")),
    ("UniPC", "Beta", ("uni_pc", "beta")),
    ("Euler", "Simple", ("euler", "simple")),
    ("Euler", "DDIM", ("euler", "ddim_uniform")),
    ("Euler", "KL Optimal", ("euler", "kl_optimal")),
])
def test_samplers_and_schedules(sampler, schedule_type, expected, registry):
    extra = f", Schedule type: {schedule_type}" if schedule_type else ""
    result = import_infotext(f"p\nSteps: 20, Sampler: {sampler}{extra}, Seed: 1, Size: 512x512")
    sample = inputs(result, "sample")
    assert (sample["sampler_name"], sample["scheduler"]) == expected
    assert not warned(result, "Sampler"), result.warnings
    assert not warned(result, "Schedule type"), result.warnings


@pytest.mark.parametrize("label", ["DPM fast", "DPM adaptive", "DPM++ 2S a", "DPM++ 3M SDE", "Restart", "Heun++",
                                   "DPM++ 2M SDE Heun Karras"])
def test_a_sampler_we_do_not_run_is_kept_verbatim_and_refused(label, registry):
    result = import_infotext(f"p\nSteps: 20, Sampler: {label}, Seed: 1, Size: 512x512")
    assert inputs(result, "sample")["sampler_name"] == label
    assert warned(result, f"Sampler: {label}", "no such sampler")
    refused = [p for p in validate(result.workflow, registry) if p.port == "sampler_name"]
    assert [p.code for p in refused] == ["invalid_choice"] and label in str(refused[0])


@pytest.mark.parametrize(("schedule_type", "expected", "warning"), [
    ("Polyexponential", "comfyui_exponential", "imported as Exponential"),
    ("Align Your Steps", "align_your_steps", "no such schedule"),
])
def test_schedules_we_lack_warn(schedule_type, expected, warning):
    result = import_infotext(f"p\nSteps: 20, Sampler: Euler, Schedule type: {schedule_type}")
    assert inputs(result, "sample")["scheduler"] == expected
    assert warned(result, "Schedule type", schedule_type, warning)


# --- hires fix, img2img, other fields -------------------------------------------------------------------------------
def test_hires_fix_with_latent_upscale():
    result = import_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3, Size: 512x768, "
                             "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent")
    assert inputs(result, "upscale") == {"upscale_method": "bilinear", "width": 1024, "height": 1536}
    refine = inputs(result, "refine")
    assert refine == {"seed": 3, "cfg": 7.0, "sampler_name": "dpmpp_2m", "scheduler": "comfyui_karras", "steps": 20,
                      "denoise": 0.5}
    assert result.workflow.node("refine").title == "Hires pass (10 of 20 steps)"
    assert {("sample", "LATENT", "upscale", "samples"), ("upscale", "LATENT", "refine", "latent_image"),
            ("refine", "LATENT", "decode", "samples")} <= links(result)
    assert not warned(result, "Hires") and not warned(result, "Denoising"), result.warnings


def test_hires_schedule_runs_as_many_steps_as_automatic1111():
    for steps in (1, 10, 15, 20, 28):
        for denoise in (0.2, 0.33, 0.45, 0.5, 0.7, 0.75, 1.0):
            total = hires_schedule(steps, denoise)
            assert int(total * denoise) == steps, (steps, denoise, total)
            assert total >= int(steps / min(denoise, 0.999))


def test_hires_fix_with_a_pixel_upscaler_decodes_upscales_with_the_model_and_encodes(tmp_path, registry):
    catalog = models(tmp_path, {"checkpoints": ["m.safetensors"], "upscale_models": ["RealESRGAN_x4plus.pth"]})
    result = import_infotext("p\nSteps: 20, Seed: 3, Size: 512x512, Denoising strength: 0.4, Hires upscale: 1.5, "
                             "Hires upscaler: R-ESRGAN 4x+, Hires sampler: Euler a, Hires CFG Scale: 5, Model: m",
                             catalog)
    assert "upscale" not in result.workflow
    assert inputs(result, "upscaler") == {"model_name": "RealESRGAN_x4plus.pth"}  # AUTOMATIC1111's file for it
    assert inputs(result, "resize") == {"upscale_method": "lanczos", "width": 768, "height": 768, "crop": "disabled"}
    assert {("sample", "LATENT", "hires_decode", "samples"), ("ckpt", "VAE", "hires_decode", "vae"),
            ("hires_decode", "IMAGE", "upscale_image", "image"),
            ("upscaler", "UPSCALE_MODEL", "upscale_image", "upscale_model"),
            ("upscale_image", "IMAGE", "resize", "image"), ("resize", "IMAGE", "hires_encode", "pixels"),
            ("ckpt", "VAE", "hires_encode", "vae"),
            ("hires_encode", "LATENT", "refine", "latent_image")} <= links(result)
    assert not warned(result, "Hires upscaler"), result.warnings
    refine = inputs(result, "refine")
    assert (refine["steps"], refine["sampler_name"], refine["cfg"]) == (hires_schedule(20, 0.4), "euler_ancestral",
                                                                        5.0)
    assert problems(result.workflow, registry, catalog) == []


@pytest.mark.parametrize(("upscaler", "method", "warns"), [
    ("Latent (nearest-exact)", "nearest-exact", False), ("Latent (nearest)", "nearest-exact", True),
    ("Latent (bicubic)", "bicubic", False), ("Latent (antialiased)", "bilinear", True),
    ("Latent (bicubic antialiased)", "bicubic", True), ("LDSR", "bilinear", True)])
def test_hires_latent_upscalers(upscaler, method, warns):
    result = import_infotext(f"p\nSteps: 20, Size: 512x512, Denoising strength: 0.5, Hires resize: 1024x0, "
                             f"Hires upscaler: {upscaler}")
    assert inputs(result, "upscale") == {"upscale_method": method, "width": 1024, "height": 1024}
    assert bool(warned(result, f"Hires upscaler: {upscaler}")) == warns


@pytest.mark.parametrize(("upscaler", "model_file", "method"), [
    ("4x-UltraSharp", "4x-UltraSharp.pth", "lanczos"), ("SwinIR 4x", "SwinIR_4x.pth", "lanczos"),
    ("Lanczos", None, "lanczos"), ("Nearest", None, "nearest-exact")])
def test_hires_pixel_upscalers(upscaler, model_file, method):
    result = import_infotext(f"p\nSteps: 20, Size: 512x512, Denoising strength: 0.5, Hires resize: 1024x0, "
                             f"Hires upscaler: {upscaler}")
    assert ("upscaler" in result.workflow) == (model_file is not None)
    if model_file:  # not in any folder (none given): named as AUTOMATIC1111's file, validation reports it missing
        assert inputs(result, "upscaler") == {"model_name": model_file}
    assert inputs(result, "resize")["upscale_method"] == method


def test_hires_resize_to_another_aspect_crops_like_automatic1111(registry):
    result = import_infotext("p\nSteps: 20, Size: 512x512, Denoising strength: 0.5, Hires resize: 1024x768")
    assert inputs(result, "upscale")["crop"] == "center"
    assert (inputs(result, "upscale")["width"], inputs(result, "upscale")["height"]) == (1024, 768)
    assert [p for p in problems(result.workflow, registry) if p[1] == "upscale"] == []


def test_img2img_infotext_is_rebuilt_as_txt2img_with_a_warning():
    result = import_infotext(BASIC + ", Denoising strength: 0.35, Mask blur: 4")
    assert "upscale" not in result.workflow and inputs(result, "sample")["denoise"] == 1.0
    assert warned(result, "Denoising strength: 0.35", "img2img")
    assert warned(result, "Mask blur: 4", "ignored")


def test_every_field_not_honoured_is_one_warning_naming_it():
    fields = {"ENSD": "31337", "Eta noise seed delta": "31337", "Version": "v1.10.1", "Face restoration": "CodeFormer",
              "Variation seed": "5", "Seed resize from": "512x512", "Eta": "0.67", "NGMS": "0.5",
              "ADetailer model": "face_yolov8n.pt", "Hashes": '{"model": "abc"}'}
    text = BASIC + "".join(f", {k}: {json.dumps(v) if ',' in v or ':' in v else v}" for k, v in fields.items())
    result = import_infotext(text)
    for key, value in fields.items():
        assert len(warned(result, f"{key}: {value}", "ignored")) == 1, (key, result.warnings)


def test_batch_size_and_bad_numbers():
    result = import_infotext(BASIC + ", Batch size: 4, Batch pos: 1")
    assert inputs(result, "latent")["batch_size"] == 4
    assert warned(result, "Batch size: 4") and warned(result, "Batch pos: 1", "ignored")
    result = import_infotext("p\nSteps: many, Seed: 1, Size: 500x500")
    assert inputs(result, "sample")["steps"] == 20 and warned(result, "Steps: many", "not a number")
    assert (inputs(result, "latent")["width"], inputs(result, "latent")["height"]) == (496, 496)


# --- validation with the models present -----------------------------------------------------------------------------
def test_full_graph_validates_when_the_models_exist(tmp_path, registry):
    catalog = models(tmp_path, {"checkpoints": ["sd15/dream.safetensors"], "loras": ["Style.safetensors",
                                                                                    "detail.pt"],
                                "hypernetworks": ["h.pt"], "vae": ["kl-f8.safetensors"],
                                "embeddings": ["EasyNegative.safetensors"]})
    text = ("a dream <lora:style:0.8> <lora:detail:1:0.5> <hypernet:h:0.6>\nNegative prompt: EasyNegative\n"
            "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 99, Size: 512x768, "
            "Model: dream, VAE: kl-f8.safetensors, Clip skip: 2, Denoising strength: 0.45, Hires upscale: 1.5, "
            'Hires upscaler: Latent (bicubic), TI hashes: "EasyNegative: 0123456789ab, missing_emb: abcd"')
    result = import_infotext(text, catalog)
    assert inputs(result, "ckpt") == {"ckpt_name": "sd15/dream.safetensors"}
    assert inputs(result, "vae") == {"vae_name": "kl-f8.safetensors"}
    assert ("vae", "VAE", "decode", "vae") in links(result)
    assert (inputs(result, "lora")["lora_name"], inputs(result, "lora_2")["lora_name"]) == ("Style.safetensors",
                                                                                             "detail.pt")
    assert inputs(result, "hypernet")["hypernetwork_name"] == "h.pt"
    assert warned(result, "'missing_emb'", "not found") and warned(result, "EasyNegative", "hash differs")
    assert problems(result.workflow, registry, catalog) == []
    assert loads(dumps(result.workflow)) == result.workflow


def test_missing_models_are_placeholders_that_validation_reports(tmp_path, registry):
    catalog = models(tmp_path, {"checkpoints": ["present.safetensors"]})
    result = import_infotext("x <lora:gone:1>\nSteps: 5, Model: absent, VAE: nope.pt, Size: 512x512", catalog)
    assert inputs(result, "ckpt")["ckpt_name"] == "absent.safetensors"
    assert inputs(result, "lora")["lora_name"] == "gone.safetensors"
    assert "vae" not in result.workflow and ("ckpt", "VAE", "decode", "vae") in links(result)
    assert warned(result, "VAE: nope.pt", "checkpoint's own VAE")
    assert sorted(problems(result.workflow, registry, catalog)) == [("missing_file", "ckpt", "ckpt_name"),
                                                                     ("missing_file", "lora", "lora_name")]


# --- images ---------------------------------------------------------------------------------------------------------
def exif_with_comment(comment: bytes) -> bytes:
    """Exif bytes holding `comment` as the UserComment of the Exif IFD, as piexif.dump writes them."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    return exif.tobytes()  # bytes: Pillow's PNG writer skips an Exif object whose first IFD is empty


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le"])
def test_jpeg_and_webp_exif_user_comment(tmp_path, suffix, codec):
    text = BASIC.replace("a cat", "a cat, 猫 ✓")
    path = tmp_path / f"image{suffix}"
    Image.new("RGB", (16, 16)).save(path, exif=exif_with_comment(b"UNICODE\0" + text.encode(codec)))
    assert read_infotext(path) == text
    assert inputs(import_infotext(read_infotext(path)), "positive")["text"] == "a cat, 猫 ✓"


def test_user_comment_encodings():
    assert decode_user_comment(b"ASCII\0\0\0Steps: 1\0") == "Steps: 1"
    assert decode_user_comment(b"UNICODE\0" + "\ufeffé".encode("utf-16-le")) == "é"
    assert decode_user_comment(b"UNICODE\0") is None


def test_png_parameters_chunk_and_images_without_infotext(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", BASIC + " ✓", zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png", pnginfo=info)
    assert read_infotext(tmp_path / "a.png") == BASIC + " ✓"
    comment = exif_with_comment(b"UNICODE\0" + BASIC.encode("utf-16-be"))
    Image.new("RGB", (8, 8)).save(tmp_path / "exif.png", exif=comment)
    assert read_infotext(tmp_path / "exif.png") == BASIC
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    assert read_infotext(tmp_path / "b.png") is None
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(InteropError, match="c.png"):
        read_infotext(tmp_path / "c.png")


def test_the_interop_modules_import_nothing_heavy():
    code = ("import json, sys\nimport nodegraph.interop.a1111, nodegraph.interop.image_text\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "PySide6", "NodeGraphQt")
            or m.startswith("nodegraph.models")] == []
