"""The options of a DualStyleGAN run, and where its stage II comes from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.registry import REGISTRY, made_for
from core.training.scaffold import RunConfig


@dataclass
class DualStyleGANConfig(RunConfig):
    """Every knob of the pipeline; loss weights as the paper's where they carry over."""

    styles: str = ""  # a folder of style images (any size; aligned here, centre-cropped when no face is found); ''
        # = stage II only, which depends on the generator alone and is exported as OUT/stage2.safetensors
    name: str = ""  # the style's name ('' = the folder's)
    generator: str = "default"  # the face generator (frozen), registry name or file
    encoder: str = "face128-psp-zplus"  # its Z+ encoder (registry name or file)
    discriminator: str = ""  # face discriminator weights (compact folder with D-*.safetensors) for G' ('' = fresh)
    pretrained: str = ""  # stage II: '' = the registry's for the generator (else trained here), a shipped file
        # (`export_stage2`), a `pretrain/` folder of another run, or 'train' (train it in out/pretrain)
    facenet: str = ""  # a converted FaceNet file for the identity loss ('' = the registry's graph)
    out: str = "runs/dualstylegan"  # output folder: styles.npz, finetune/, codes.safetensors, pretrain/, style/,
        # NAME.safetensors
    stop_after: str = ""  # align | finetune | codes: stop after that phase (align needs dlib, which a GPU machine
        # lacks; a GPU call may lack what the next phase needs)
    res_index: int = 6  # ModRes blocks after convs 0..res_index (structure), colour transforms above
    batch: int = 16
    amp: bool = True  # bf16 autocast (GPU)
    # 2. fine-tuning G' on the styles
    finetune_kimg: float = 20.0
    finetune_lr: float = 0.002
    # 3. destylisation
    destylize_steps: int = 300
    destylize_lr: float = 0.05
    destylize_spread: float = 0.5  # weight of the code's spread across layers (std over layers, mean over dims)
    # 4. stage II
    pretrain_kimg: float = 200.0
    pretrain_schedule: str = "paper"  # paper: the extrinsic face takes the layers from k on, k = res_index + 1, then
        # res_index, then res_index - 1 (the official 7, 6, 5); coarse: it takes layers 0..l, l growing from 0 to
        # res_index (how face128's shipped stage II was trained)
    # 5. stage III
    style_kimg: float = 30.0
    lr: float = 0.002
    l2: float = 1.0  # stage II: pixel L2 beside LPIPS
    lpips: float = 1.0  # stage II's reconstruction, and stage III's exemplars (LPIPS only: no pixel loss)
    adversarial: float = 0.1
    identity: float = 1.0  # FaceNet 1 - cosine between the face and its stylisation (0: off)
    style_loss: float = 1.0  # feature mean / std matching with the exemplar
    style_layers: int = 2  # ... on AlexNet's first layers only: deeper statistics carry the exemplar's face itself
    jitter: float = 0.1  # std of the noise on an exemplar's extrinsic Z+ code when it is rebuilt (the paper's)
    modres_l2: float = 0.015  # x the sum of the ModRes weights' norms (the paper's L_reg)
    r1: float = 0.1
    kimg: float = 0.0  # unused here: each phase has its own length (--finetune-kimg, --pretrain-kimg, --style-kimg)
    sample_minutes: float = 2.0

    @property
    def style_name(self) -> str:
        return self.name or Path(self.styles).name


def stage2_file(cfg: DualStyleGANConfig) -> str | None:
    """The shipped stage II a run reads (`pretrained` as a registry name or file; for a style run without it, the
    registry's made for the generator), or None when stage II is trained in `stage2_folder`."""
    source = cfg.pretrained
    if not source and cfg.styles:
        try:
            source = made_for("dualstylegan_stage2", cfg.generator)
        except KeyError:
            return None
    return source if source in REGISTRY or Path(source).suffix == ".safetensors" else None


def stage2_folder(cfg: DualStyleGANConfig) -> Path:
    """Where stage II trains when no shipped file is read: `pretrained` (another run's `pretrain/`), else
    OUT/pretrain."""
    return Path(cfg.pretrained) if cfg.pretrained not in ("", "train") else Path(cfg.out) / "pretrain"
