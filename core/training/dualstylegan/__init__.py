"""Train DualStyleGAN for a frozen face generator on a folder of style images (`python -m core train dualstylegan`).

The paper's pipeline (Yang et al., CVPR 2022) as phases (`phases.py`) in the run folder `out/`; a phase whose result
exists is skipped and a phase cut short by the time budget resumes, so a run spans several short GPU calls:

1. align, `styles.npz` -- the style images aligned like photos (dlib landmarks; a style the detector misses is
   centre-cropped instead, and the counts are logged) at the generator's size.
2. finetune, `finetune/` -- a copy of the generator fine-tuned on them with the StyleGAN2 trainer (ADA), its
   discriminator started from a face discriminator when one is given: G' draws the style (toonification).
3. codes, `codes.safetensors` -- facial destylisation. Each style image S is encoded by the face model's Z+ encoder,
   the code optimised so that G' reconstructs S (LPIPS + L2, plus the spread of the code across layers, which keeps
   it a plausible face code), and rendered by the face generator: the destylised face. Its encoding is the
   exemplar's intrinsic code; the optimised code is its extrinsic code (Z+, mapped by the face generator's mapping
   network, as the official `style_transfer.py` does).
4. pretrain, `pretrain/` -- progressive fine-tuning stage II, structure transfer in the face domain
   (`extrinsic.PretrainTrainer`). It depends only on the generator, so it is trained once and shipped
   (`face128-dualstylegan-stage2`, `export_stage2`): a style run starts from it.
5. style, `style/` -- stage III on the style (`extrinsic.StyleTrainer`): each S rebuilt from its codes; random
   faces with random exemplars against the discriminator of step 2, the exemplar's feature statistics and the
   face's identity.
6. export -- `export_style` ships the extrinsic path (int8 weights with per-row scales) and the exemplar codes as one
   file that `core.style` loads over the base generator (`export.py`).

Only the extrinsic path trains (structure MLP, ModRes blocks, colour transforms); DualStyleGAN starts as the face
generator exactly and stays it at weight 0.
"""

from core.training.dualstylegan.config import DualStyleGANConfig
from core.training.dualstylegan.export import export_stage2, export_style, read_stage2
from core.training.dualstylegan.phases import destylize, train

__all__ = ["DualStyleGANConfig", "destylize", "export_stage2", "export_style", "read_stage2", "train"]
