"""Training: StyleGAN2 loop, losses, augmentation and device-resident data (`python -m core.train`)."""
