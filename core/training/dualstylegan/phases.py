"""The pipeline's phases over the run folder, and `train`, which walks them with `scaffold.run_phases`."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core.data import list_photos
from core.faces import from_uint8, to_uint8
from core.inversion.optimise import run_adam
from core.measures import lpips_distance
from core.nets.stylegan2 import Generator
from core.registry import load_encoder, load_generator
from core.style import align_exemplar
from core.training.data import DeviceImageBank
from core.training.dualstylegan.config import DualStyleGANConfig, stage2_file, stage2_folder
from core.training.dualstylegan.export import export_stage2, export_style, read_stage2
from core.training.dualstylegan.extrinsic import (
    ExtrinsicTrainer,
    PretrainTrainer,
    StyleTrainer,
    read_extrinsic,
)
from core.training.scaffold import (
    Phase,
    full,
    kimg_done,
    read_parts,
    resume_and_run,
    run,
    run_phases,
    setup_distributed,
)
from core.training.stylegan2 import TrainConfig, Trainer


def align_styles(folder: str | Path, size: int) -> tuple[np.ndarray, list[str], list[bool]]:
    """Every image of `folder` as `core.style.align_exemplar` crops it -> (uint8 [N, size, size, 3], names, aligned
    by landmarks?): no exemplar is lost to a detector that misses a drawn face, and the caller reports how many."""
    pixels, names, aligned = [], [], []
    for path in list_photos(folder):
        image, found = align_exemplar(path, size)
        pixels.append(np.asarray(image))
        names.append(path.name)
        aligned.append(found)
    if not pixels:
        raise FileNotFoundError(f"no images in {folder}")
    return np.stack(pixels), names, aligned


def finetune_config(cfg: DualStyleGANConfig, G: Generator) -> TrainConfig:
    g = G.config
    return TrainConfig(size=g["size"], style_dim=g["style_dim"], n_mlp=g["n_mlp"], channel_base=g["channel_base"],
                       channel_max=g["channel_max"], batch=cfg.batch, lr=cfg.finetune_lr, kimg=cfg.finetune_kimg,
                       minutes=cfg.minutes, out=str(Path(cfg.out) / "finetune"), ada_kimg=20.0, amp=cfg.amp,
                       log_kimg=cfg.log_kimg, sample_minutes=cfg.sample_minutes, seed=cfg.seed, device=cfg.device)


def destylize(cfg: DualStyleGANConfig, G: Generator, G_style: Generator, encoder, styles: torch.Tensor,
              device: torch.device) -> dict[str, torch.Tensor]:
    """Exemplar codes: {'extrinsic': Z+ [N, L, D] (optimised on G'), 'intrinsic': Z+ of the destylised faces,
    'destylized': those faces as uint8 [N, S, S, 3], 'lpips': G'(extrinsic) against S}.

    Each code starts at the Z+ encoding of S and is optimised so that G' draws S (LPIPS + L2), its spread across
    layers kept small so that it stays a plausible face code; the face generator then draws it as a face."""
    targets = from_uint8(styles).to(device)
    with torch.no_grad():
        code = torch.cat([encoder.encode(chunk) for chunk in targets.split(64)]).requires_grad_(True)

    def loss_fn(step: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = G_style.synthesis(G_style.map_zplus(code), noise_mode="const")
        perceptual, l2, spread = lpips_distance(image, targets).mean(), F.mse_loss(image, targets), code.std(1).mean()
        return perceptual + l2 + cfg.destylize_spread * spread, {"lpips": perceptual, "l2": l2, "spread": spread}

    losses = run_adam(loss_fn, [{"params": [code], "lr": cfg.destylize_lr}], cfg.destylize_steps,
                      lr_factor=lambda t: min(1.0, 0.5 * (1 + math.cos(math.pi * t)) * 1.2))  # cosine, flat to 27%
    if losses:
        print(f"destylised {len(code)} style images in {cfg.destylize_steps} steps: "
              + ", ".join(f"{k} {v[0]:.4f} -> {v[-1]:.4f}" for k, v in losses.items()), flush=True)
    with torch.no_grad():
        code = code.detach()
        reconstruction = G_style.synthesis(G_style.map_zplus(code), noise_mode="const")
        faces = torch.cat([G.synthesis(G.map_zplus(chunk), noise_mode="const") for chunk in code.split(64)])
        intrinsic = torch.cat([encoder.encode(chunk) for chunk in faces.split(64)])
        distance = lpips_distance(reconstruction, targets)
    return {"extrinsic": code.cpu(), "intrinsic": intrinsic.cpu(), "destylized": to_uint8(faces).contiguous(),
            "lpips": distance.cpu()}


class Pipeline:
    """The phases of one run folder and what they share, each piece read from the folder when first needed."""

    def __init__(self, cfg: DualStyleGANConfig, device: torch.device, start: float):
        self.cfg, self.device, self.start, self.out = cfg, device, start, Path(cfg.out)
        self.G = load_generator(cfg.generator, device).requires_grad_(False)
        self.exported: Path | None = None

    def phases(self) -> list[Phase]:
        cfg, out = self.cfg, self.out
        pretrain = Phase("pretrain", lambda: stage2_file(cfg) is not None
                         or kimg_done(stage2_folder(cfg), cfg.pretrain_kimg), self.pretrain)
        if not cfg.styles:  # stage II alone: exported as the file style runs start from
            return [pretrain, Phase("export", lambda: False, self.export_stage2)]
        return [Phase("align", (out / "styles.npz").exists, self.align),
                Phase("finetune", lambda: kimg_done(out / "finetune", cfg.finetune_kimg), self.finetune),
                Phase("codes", (out / "codes.safetensors").exists, self.destylize),
                pretrain,
                Phase("style", lambda: kimg_done(out / "style", cfg.style_kimg), self.style),
                Phase("export", lambda: False, self.export)]  # cheap: written again from what style/ holds

    @cached_property
    def styles(self) -> torch.Tensor:
        """The aligned style images, uint8 [N, S, S, 3]."""
        with np.load(self.out / "styles.npz") as saved:
            return torch.from_numpy(saved["pixels"])

    @cached_property
    def finetuned(self) -> Trainer:
        """G' and its discriminator: the StyleGAN2 trainer of finetune/, resumed, or started as the face generator
        (and the face discriminator when one is given)."""
        tcfg = finetune_config(self.cfg, self.G)
        bank = DeviceImageBank(self.styles.permute(0, 3, 1, 2).contiguous().to(self.device), seed=self.cfg.seed)
        trainer = Trainer(tcfg, self.device, data=bank)
        compact = Path(tcfg.out) / "compact"
        if (compact / "meta.json").exists():
            trainer.load_compact(compact)
        else:
            for net in (trainer.G, trainer.G_ema):
                net.load_state_dict(self.G.state_dict())
            if self.cfg.discriminator:
                trainer.D.load_state_dict(full(read_parts(Path(self.cfg.discriminator), "D")))
        return trainer

    def run_extrinsic(self, trainer: ExtrinsicTrainer, folder: Path, kimg: float) -> bool:
        return resume_and_run(trainer, dataclasses.replace(self.cfg, kimg=kimg, out=str(folder)), self.start)

    def align(self) -> bool:
        pixels, names, aligned = align_styles(self.cfg.styles, self.G.size)
        np.savez_compressed(self.out / "styles.npz", pixels=pixels, names=np.array(names), aligned=np.array(aligned))
        print(f"{len(names)} style images: {sum(aligned)} aligned by landmarks, {len(names) - sum(aligned)} "
              "centre-cropped (no face found)", flush=True)
        return True

    def finetune(self) -> bool:
        """Toonify: G' and a discriminator trained on the style images (ADA), from the face generator."""
        run(self.finetuned, self.finetuned.cfg, self.start)
        return self.finetuned.nimg >= self.cfg.finetune_kimg * 1000

    def destylize(self) -> bool:
        encoder = load_encoder(self.cfg.encoder, self.device, generator=self.cfg.generator, decoder=self.G).eval()
        if encoder.latent_space != "z+":
            raise ValueError(f"{self.cfg.encoder} encodes into {encoder.latent_space}; destylisation needs a Z+ "
                             "encoder")
        codes = destylize(self.cfg, self.G, self.finetuned.G_ema.requires_grad_(False), encoder, self.styles,
                          self.device)
        save_file(codes, str(self.out / "codes.safetensors"))
        return True

    def pretrain(self) -> bool:
        trainer = PretrainTrainer(self.cfg, self.G, self.device)
        return self.run_extrinsic(trainer, stage2_folder(self.cfg), self.cfg.pretrain_kimg)

    def style(self) -> bool:
        codes = load_file(str(self.out / "codes.safetensors"))
        trainer = StyleTrainer(self.cfg, self.G, self.device, codes, self.styles, self.finetuned.D)
        file = stage2_file(self.cfg)  # stage II's path, which style/'s replaces when the phase resumes
        stage2 = read_stage2(file, self.cfg.generator) if file else read_extrinsic(stage2_folder(self.cfg) / "compact")
        trainer.model.load_state_dict(stage2, strict=False)
        return self.run_extrinsic(trainer, self.out / "style", self.cfg.style_kimg)

    def export(self) -> bool:
        self.exported = export_style(self.out, self.out / f"{self.cfg.style_name}.safetensors")
        return True

    def export_stage2(self) -> bool:
        self.exported = export_stage2(stage2_folder(self.cfg), self.out / "stage2.safetensors")
        return True


def train(cfg: DualStyleGANConfig) -> Path | None:
    """Run the phases not done yet within `cfg.minutes`; when all are done, returns the exported file (the style,
    or without `cfg.styles` stage II's OUT/stage2.safetensors, which style runs start from)."""
    start = time.time()
    _, _, device = setup_distributed(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    pipeline = Pipeline(cfg, device, start)
    return pipeline.exported if run_phases(pipeline.phases(), cfg.stop_after) else None
