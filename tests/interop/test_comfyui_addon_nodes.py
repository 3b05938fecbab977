"""A ComfyUI workflow using the add-on kinds (ControlNet with a Canny preprocessor, an ESRGAN-style upscale model
and image scaling, as hires-fix and ControlNet workflows do) imports onto our nodes with its values and links, with no
placeholder, validates, and exports back to the same ComfyUI graph."""

from __future__ import annotations

import json

from nodegraph.core.validate import validate
from nodegraph.interop import import_text
from nodegraph.interop.comfyui_export import export_api
from nodegraph.packs import create_registry

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "LoadImage", "inputs": {"image": "house.png"}},
    "5": {"class_type": "Canny", "inputs": {"image": ["4", 0], "low_threshold": 0.3, "high_threshold": 0.7}},
    "6": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"}},
    "7": {"class_type": "ControlNetApplyAdvanced",
          "inputs": {"positive": ["2", 0], "negative": ["3", 0], "control_net": ["6", 0], "image": ["5", 0],
                     "strength": 0.8, "start_percent": 0.0, "end_percent": 0.6}},
    "8": {"class_type": "ControlNetApply",
          "inputs": {"conditioning": ["7", 0], "control_net": ["6", 0], "image": ["5", 0], "strength": 0.5}},
    "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "10": {"class_type": "KSampler",
           "inputs": {"model": ["1", 0], "positive": ["8", 0], "negative": ["7", 1], "latent_image": ["9", 0],
                      "seed": 5, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                      "denoise": 1.0}},
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
    "12": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
    "13": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["12", 0], "image": ["11", 0]}},
    "14": {"class_type": "ImageScaleBy", "inputs": {"image": ["13", 0], "upscale_method": "lanczos", "scale_by": 0.5}},
    "15": {"class_type": "ImageScale", "inputs": {"image": ["14", 0], "upscale_method": "bicubic", "width": 768,
                                                  "height": 0, "crop": "disabled"}},
    "16": {"class_type": "SaveImage", "inputs": {"images": ["15", 0], "filename_prefix": "hires"}},
}
EXPECTED_TYPES = {"5": "Canny", "6": "LoadControlNet", "7": "ApplyControlNet", "8": "ApplyControlNetSimple",
                  "12": "LoadUpscaleModel", "13": "UpscaleImageWithModel", "14": "ImageScaleBy", "15": "ImageScale"}


def test_controlnet_and_upscale_workflow_imports_validates_and_exports_back():
    registry = create_registry(user_packs=False)
    result = import_text(json.dumps(PROMPT))
    workflow = result.workflow
    assert {node_id: workflow.nodes[node_id].type for node_id in EXPECTED_TYPES} == EXPECTED_TYPES
    assert result.warnings == []  # nothing left as a placeholder, nothing ignored
    assert workflow.nodes["7"].inputs == {"strength": 0.8, "start_percent": 0.0, "end_percent": 0.6}
    assert workflow.nodes["14"].inputs == {"upscale_method": "lanczos", "scale_by": 0.5}
    links = {str(link) for link in workflow.links}
    assert {"7.positive -> 8.conditioning", "7.negative -> 10.negative", "5.IMAGE -> 7.image",
            "12.UPSCALE_MODEL -> 13.upscale_model", "11.IMAGE -> 13.image", "13.IMAGE -> 14.image"} <= links
    problems = [p for p in validate(workflow, registry) if p.port not in ("image",)]
    assert problems == [], problems
    exported = export_api(workflow, registry)
    for node_id, node in PROMPT.items():
        assert exported[node_id]["class_type"] == node["class_type"], node_id
        assert exported[node_id]["inputs"] == node["inputs"], node_id
