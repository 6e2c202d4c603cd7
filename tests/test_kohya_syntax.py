"""kohya's names and syntax: --ss and # comments in sample prompts, step checkpoint names, A1111 lora tags."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.train.sampling import draw_samples


def test_ss_is_parsed_not_left_in_the_negative():
    sp = parse_sample_prompt("a cat --n blurry, lowres --ss euler_a --w 512 --h 768 --d 5 --l 6.5 --s 28")
    assert (sp.prompt, sp.negative, sp.sampler) == ("a cat", "blurry, lowres", "euler_a")
    assert (sp.width, sp.height, sp.seed, sp.cfg, sp.steps) == (512, 768, 5, 6.5, 28)
    assert parse_sample_prompt("a cat --ss DPM++ 2M Karras --n ugly").sampler == "DPM++ 2M Karras"
    assert parse_sample_prompt("a cat --n ugly").sampler is None


def test_comment_lines_are_dropped_and_ss_checked_before_training():
    cfg = TrainConfig.from_dict({"sampling": {"sample_prompts": [
        "# my prompts", "a cat --ss euler_a", "  # another comment", "", "a dog --d 3"]}}).validate()
    assert cfg.sampling.sample_prompts == ["a cat --ss euler_a", "a dog --d 3"]
    with pytest.raises(ConfigError, match="--ss unknown sampler 'eulr_q'"):
        TrainConfig.from_dict({"sampling": {"sample_prompts": ["a cat --ss eulr_q"]}}).validate()
    with pytest.raises(ConfigError, match="not a number"):
        TrainConfig.from_dict({"sampling": {"sample_prompts": ["a cat --w big"]}}).validate()


class _Pipe:
    """Records which scheduler drew each prompt."""

    def __init__(self):
        from diffusers import DDIMScheduler

        self.scheduler = DDIMScheduler()
        self.drawn = []

    def __call__(self, prompt, negative_prompt, **kw):
        self.drawn.append((prompt, negative_prompt, type(self.scheduler).__name__))
        return SimpleNamespace(images=[Image.new("RGB", (8, 8))])


def test_ss_sampler_is_used_when_drawing(tmp_path):
    cfg = TrainConfig.from_dict({"sampling": {"sample_sampler": "ddim", "sample_prompts": [
        "# comment", "a cat --ss euler_a --n ugly", "a dog", "a fox --ss DPM++ 2M"]}}).validate()
    pipe = _Pipe()
    before = pipe.scheduler
    draw_samples(SimpleNamespace(pipe=pipe), cfg, tmp_path, 1)
    assert pipe.drawn == [("a cat", "ugly", "EulerAncestralDiscreteScheduler"), ("a dog", None, "DDIMScheduler"),
                          ("a fox", None, "DPMSolverMultistepScheduler")]
    assert pipe.scheduler is before, "the pipeline's own scheduler comes back"
