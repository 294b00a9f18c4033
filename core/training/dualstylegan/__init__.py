"""Train DualStyleGAN for a frozen face generator on a folder of style images (`python -m core train dualstylegan`);
the pipeline is in `phases.py`."""

from core.training.dualstylegan.phases import DualStyleGANConfig, export_stage2, export_style, read_stage2, train

__all__ = ["DualStyleGANConfig", "export_stage2", "export_style", "read_stage2", "train"]
