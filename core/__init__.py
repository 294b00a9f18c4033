"""StyleGAN playground core: invert real face photos into StyleGAN2, edit and restyle them."""
