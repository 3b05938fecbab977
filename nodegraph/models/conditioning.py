"""What flows along a CONDITIONING edge: encoded prompt embeddings, plus the pooled embedding SDXL needs, for a
prompt that uses AUTOMATIC1111's prompt editing (``[from:to:when]``, ``[a|b]``) the encoding of each plain prompt it
turns into, chosen per sampler step with :meth:`Conditioning.at_step`, and the ControlNets applied to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodegraph.models.prompt_parser import PromptSchedule

#: The step count whose first step a scheduled conditioning's own ``embeds`` show (the UNet Sampler's default).
NOMINAL_STEPS = 20


@dataclass(frozen=True, eq=False)
class Control:
    """One ControlNet applied to a conditioning (ComfyUI's Apply ControlNet): the sampler runs it on each step whose
    progress lies in [start_percent, end_percent] and adds its residuals, times `strength`, to the UNet's.

    Compared by identity: Apply ControlNet puts the same entry on the positive and the negative conditioning, which
    is how the sampler knows it may run it once on the batch of both, as diffusers' ControlNet pipelines do.

    Args:
        controlnet: the CONTROL_NET handle (:class:`nodegraph.models.controlnet.ControlNetHandle`).
        image: the control image: float pixels in [0, 1] shaped [1 or B, H, W, 3] on the CPU (resized to the
            image size by the sampler).
        strength: diffusers' ``controlnet_conditioning_scale``.
        start_percent, end_percent: the part of the run it acts in, as fractions of the steps (diffusers'
            ``control_guidance_start`` / ``control_guidance_end``).
    """

    controlnet: Any
    image: Any
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def active(self, position: int, total: int) -> bool:
        """Whether the step `position` (0-based) of `total` lies within [start_percent, end_percent], by diffusers'
        rule: ``start <= position / total`` and ``(position + 1) / total <= end``."""
        return not (position / total < self.start_percent or (position + 1) / total > self.end_percent)


@dataclass(frozen=True)
class Conditioning:
    """An encoded prompt.

    Args:
        embeds: the text-encoder hidden states, shaped [1, tokens, width] (77 tokens per chunk of the prompt; SDXL
            concatenates both encoders along the width). For a scheduled prompt: those of its first step at
            :data:`NOMINAL_STEPS` steps, for consumers that ignore scheduling; a sampler calls :meth:`at_step`.
        pooled: SDXL's pooled embedding of its second text encoder, shaped [1, width]; None for SD 1.x/2.x.
        text: the prompt as the user wrote it (for image metadata), editing syntax included.
        clip_skip: the CLIP skip it was encoded with (for image metadata).
        schedule: the parsed prompt editing; None for a prompt without any (then :meth:`at_step` returns self).
        variants: each plain prompt the schedule may give → its encoding (a plain Conditioning with this `text`).
        controls: the ControlNets applied to it, in the order applied (their residuals add up). A sampler reads them
            here, on the conditioning it is given: the step variants of :meth:`at_step` do not carry them.
    """

    embeds: Any
    pooled: Any | None = None
    text: str = ""
    clip_skip: int = 1
    schedule: PromptSchedule | None = field(default=None, repr=False, compare=False)
    variants: Mapping[str, Conditioning] = field(default_factory=dict, repr=False, compare=False)
    controls: tuple[Control, ...] = field(default=(), repr=False, compare=False)

    @property
    def is_scheduled(self) -> bool:
        """Whether the conditioning changes from step to step, so a sampler must call :meth:`at_step` each step."""
        return self.schedule is not None

    def at_step(self, step_index: int, total_steps: int, *, first_pass_steps: int | None = None) -> Conditioning:
        """The plain conditioning AUTOMATIC1111 uses at one sampler step; self when the prompt has no editing.

        Args:
            step_index: the 0-based index of the step within the whole schedule, ``0 … total_steps − 1``, counted as
                AUTOMATIC1111's denoiser counts: one per model evaluation (its second-order samplers — Heun, DPM2,
                DPM2 a, DPM++ 2S a, DPM++ SDE — evaluate twice per step); in img2img, 0 is the first step run.
            total_steps: the steps the fractions in ``[from:to:0.5]`` refer to: the sampler's `steps` (twice that
                for the second-order samplers), also in img2img, where only the last part of them runs.
            first_pass_steps: only for the second pass of a hires fix: the first pass's `total_steps`, which
                AUTOMATIC1111 subtracts from step numbers (and 1 from fractions); `total_steps` is then the second
                pass's.

        Returns one of a few stored objects (the same one for steps with the same text), so comparing by identity
        tells whether the conditioning changed since the last step.
        """
        if self.schedule is None:
            return self
        variant = self.variants[self.schedule.text_at(step_index, total_steps, first_pass_steps=first_pass_steps)]
        if variant.text != self.text or variant.clip_skip != self.clip_skip:  # a replace() after encoding
            variant = replace(variant, text=self.text, clip_skip=self.clip_skip)
        return variant
