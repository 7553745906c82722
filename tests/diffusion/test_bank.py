"""The SDAS texture bank: reproducible, checksummed, resumable."""

from __future__ import annotations

import json

import pytest
import torch

from anomalysynth.cli import main
from anomalysynth.diffusion import SDASBank, build_sdas_bank
from anomalysynth.synth import create_synthesizer


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bank_built_twice_is_identical(tiny_checkpoint, tmp_path):
    a = build_sdas_bank(tiny_checkpoint, tmp_path / "a", num_textures=5, num_steps=4, batch_size=2, progress=False)
    b = build_sdas_bank(tiny_checkpoint, tmp_path / "b", num_textures=5, num_steps=4, batch_size=2, progress=False)
    files_a, files_b = _files(a), _files(b)
    assert len([f for f in files_a if f.endswith(".png")]) == 5
    assert files_a == files_b
    c = build_sdas_bank(
        tiny_checkpoint, tmp_path / "c", num_textures=5, num_steps=4, batch_size=2, seed=1, progress=False
    )
    assert _files(c)["textures/000000.png"] != files_a["textures/000000.png"]
    bank = SDASBank(a)
    assert len(bank) == 5
    assert ((bank.strengths >= 0.1) & (bank.strengths <= 0.2)).all()
    assert len(set(bank.strengths.tolist())) == 5  # one strength per texture


def test_interrupted_build_resumes_to_the_same_bank(tiny_checkpoint, tmp_path):
    full = build_sdas_bank(
        tiny_checkpoint, tmp_path / "full", num_textures=4, num_steps=3, batch_size=2, progress=False
    )
    part = build_sdas_bank(
        tiny_checkpoint, tmp_path / "part", num_textures=4, num_steps=3, batch_size=2, progress=False
    )
    (part / "manifest.json").unlink()
    (part / "textures" / "000003.png").unlink()  # as if killed after the first batch
    build_sdas_bank(tiny_checkpoint, part, num_textures=4, num_steps=3, batch_size=2, progress=False)
    assert _files(part) == _files(full)


def test_other_settings_in_the_same_folder_are_refused(tiny_checkpoint, tmp_path):
    build_sdas_bank(tiny_checkpoint, tmp_path / "bank", num_textures=2, num_steps=2, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        build_sdas_bank(tiny_checkpoint, tmp_path / "bank", num_textures=2, num_steps=3, progress=False)


def test_corrupt_texture_is_detected(tiny_checkpoint, tmp_path):
    bank = build_sdas_bank(tiny_checkpoint, tmp_path / "bank", num_textures=2, num_steps=2, progress=False)
    (bank / "textures" / "000001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"000001.png.*corrupt"):
        SDASBank(bank)


def test_sdas_synthesizer_reads_the_bank_and_reports_strengths(tiny_checkpoint, tmp_path):
    bank = build_sdas_bank(tiny_checkpoint, tmp_path / "bank", num_textures=6, num_steps=3, progress=False)
    synth = create_synthesizer("sdas", bank=str(bank))
    images = torch.rand(4, 3, 32, 32)
    out = synth(images, generator=torch.Generator().manual_seed(0))
    strengths = SDASBank(bank).strengths.float()
    assert torch.equal(out.params["sdas_strength"], strengths[out.params["texture_index"]])
    # the strength is the parts' product: opacity U[0.5, 1] times the texture's s
    s = out.params["sdas_strength"].float()
    anomalous = out.label.bool()
    ratio = out.strength[anomalous] / s[anomalous]
    assert ((ratio >= 0.5 - 1e-6) & (ratio <= 1.0 + 1e-6)).all()
    manifest = json.loads((bank / "manifest.json").read_text())
    assert synth.config()["bank_key"] == json.dumps(manifest["key"], sort_keys=True)


def test_cli_builds_a_bank_and_a_grid(tiny_checkpoint, tmp_path, capsys):
    args = ["cache", "sdas", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "bank")]
    assert main([*args, "--num", "3", "--steps", "2", "--size", "16"]) == 0
    assert len(SDASBank(tmp_path / "bank")) == 3
    out = tmp_path / "grid.png"
    grid = ["sdas-grid", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    assert main([*grid, "--num", "3", "--steps", "2", "--scale", "2"]) == 0
    from PIL import Image

    with Image.open(out) as img:
        assert img.height == 4 * (16 + 2) + 2  # four strength rows of 8 px samples upscaled x2
    assert "rows s = 0, 0.1, 0.2, 0.4" in capsys.readouterr().out


def test_the_bank_predictor_owns_the_network_so_device_moves_reach_it(tiny_checkpoint, tmp_path):
    from anomalysynth.diffusion import SDASSampler, load_diffusion
    from anomalysynth.diffusion.bank import SDASBankPredictor

    unet, scheduler = load_diffusion(tiny_checkpoint)
    predictor = SDASBankPredictor(SDASSampler(unet, scheduler, num_steps=2), tmp_path, 4, (0.1, 0.2))
    predictor.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in unet.parameters())
    predictor.to("meta")
    assert all(p.is_meta for p in unet.parameters()) and all(b.is_meta for b in unet.buffers())


# spawn, not fork: a forked rank inherits the parent's busy thread pools (numba, OpenMP) and can deadlock
@pytest.mark.parametrize("strategy", [pytest.param("ddp_spawn", marks=pytest.mark.slow)])
def test_two_processes_build_the_one_process_bank_file_for_file(tiny_checkpoint, tmp_path, strategy):
    args = {"num_textures": 5, "num_steps": 3, "batch_size": 2, "progress": False}
    one = build_sdas_bank(tiny_checkpoint, tmp_path / "one", **args)
    trainer_kwargs = {"accelerator": "cpu", "devices": 2, "strategy": strategy}
    two = build_sdas_bank(tiny_checkpoint, tmp_path / "two", trainer_kwargs=trainer_kwargs, **args)
    assert _files(one) == _files(two)
    assert len([f for f in _files(two) if f.endswith(".png")]) == 5
