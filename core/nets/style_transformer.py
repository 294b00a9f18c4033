"""Style Transformer (sapphire497/style-transformer, CVPR 2022) in the official state-dict layout.

Inversion: one learned query per style vector (`z`, mapped by the decoder's own mapping network so the
queries start in W) is refined by three DETR-style decoder layers; each layer self-attends over the queries
and cross-attends to one level of the pSp feature pyramid (coarse 16², medium 32², fine 64²). The codes are
offsets from `latent_avg`, like pSp's. The layers are `nn.TransformerDecoderLayer` (post-norm, ReLU, packed
`in_proj` attention weights), whose parameter names are exactly DETR's.

The defaults are the official architecture. `widths` / `units` shrink the backbone as for pSp; the attention then
runs at the pyramid's width (`widths[3]`), and when that differs from the style width two linear maps
(`query_in`, `style_out`) carry the queries into it and the refined ones back to W. The official model has neither.

Editing: `EditTransformer` mixes a source W+ with a reference W+ (source queries, reference keys/values), and
is trained with `reference_edit_loss`, which reads both through a frozen latent attribute classifier
(`LatentAttributeClassifier`, the official `LCNet_40` over 40 CelebA attributes). No official weights exist
for these two; the classes fix the interface and layout for the project's own training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.nets.encoders import STAGE_WIDTHS, PyramidBackbone


def decoder_layer(d_model: int = 512, n_heads: int = 4, ff_dim: int = 1024, dropout: float = 0.1) -> nn.Module:
    """The official `TransformerDecoderLayer(d_model=512, nhead=4, dim_feedforward=1024)`: sequence-first."""
    return nn.TransformerDecoderLayer(d_model, n_heads, ff_dim, dropout)


class StyleTransformerEncoder(PyramidBackbone):
    """Image [B, C, S, S] in [-1, 1] + queries [B, n_styles, 512] -> W+ offsets [B, n_styles, 512]."""

    needs_query = True

    def __init__(self, n_styles: int = 18, backbone: str = "ir_se50", in_channels: int = 3, dropout: float = 0.1,
                 widths: tuple[int, ...] = STAGE_WIDTHS, units: tuple[int, ...] | None = None, style_dim: int = 512,
                 n_heads: int = 4, ff_dim: int = 1024, input_size: int = 256):
        super().__init__()
        self.n_styles, self.input_size = n_styles, input_size  # images are resized to input_size before encoding
        self._build_backbone(backbone, in_channels, widths, units)
        self._build_laterals()
        width = self.widths[3]
        self.transformerlayer_coarse = decoder_layer(width, n_heads, ff_dim, dropout)
        self.transformerlayer_medium = decoder_layer(width, n_heads, ff_dim, dropout)
        self.transformerlayer_fine = decoder_layer(width, n_heads, ff_dim, dropout)
        self.z = nn.Parameter(torch.randn(1, n_styles, style_dim))
        if width != style_dim:
            self.query_in, self.style_out = nn.Linear(style_dim, width), nn.Linear(width, style_dim)

    def query(self, mapping: Callable[[torch.Tensor], torch.Tensor], batch: int) -> torch.Tensor:
        """The queries `StyleTransformer.forward` builds: the learned seeds `z` through the decoder's mapping."""
        return mapping(self.z.expand(batch, -1, -1).flatten(0, 1)).view(batch, *self.z.shape[1:])

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        layers = (self.transformerlayer_coarse, self.transformerlayer_medium, self.transformerlayer_fine)
        projected = hasattr(self, "query_in")
        q = (self.query_in(query) if projected else query).transpose(0, 1)  # [n_styles, B, D]
        for layer, memory in zip(layers, self.pyramid(x), strict=True):
            q = layer(q, memory.flatten(2).permute(2, 0, 1))  # memory: [H*W, B, D]
        q = q.transpose(0, 1)
        return self.style_out(q) if projected else q

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, query: torch.Tensor) -> list[torch.Tensor]:
        """Where each style query looks: per pyramid level (coarse, medium, fine), the cross-attention weights
        [B, n_styles, H, W] (averaged over heads) of that level's layer, as in its forward pass (eval mode)."""
        layers = (self.transformerlayer_coarse, self.transformerlayer_medium, self.transformerlayer_fine)
        q = (self.query_in(query) if hasattr(self, "query_in") else query).transpose(0, 1)
        maps = []
        for layer, level in zip(layers, self.pyramid(x), strict=True):
            memory = level.flatten(2).permute(2, 0, 1)
            attended = layer.norm1(q + layer.self_attn(q, q, q, need_weights=False)[0])
            weights = layer.multihead_attn(attended, memory, memory, need_weights=True)[1]  # [B, n_styles, H*W]
            maps.append(weights.view(*weights.shape[:2], *level.shape[-2:]))
            q = layer(q, memory)
        return maps


# ----------------------------------------------------------------------------------------------------
# Reference-based editing


class EditTransformer(nn.Module):
    """Source W+ [B, n, D] attends to reference W+ [B, n, D] -> edited W+ [B, n, D] (official key layout).

    With `n_attributes` (the project's own, one model for every attribute): a learned query per attribute is added
    to the source's, and the layer's output goes through a zero-initialised linear map into an offset of the
    source code, so an untrained model is the identity edit and one file serves all attributes.
    """

    def __init__(self, style_dim: int = 512, n_heads: int = 4, ff_dim: int = 1024, dropout: float = 0.1,
                 n_attributes: int = 0):
        super().__init__()
        self.transformerlayer = decoder_layer(style_dim, n_heads, ff_dim, dropout)
        if n_attributes:
            self.attribute_query = nn.Embedding(n_attributes, style_dim)
            self.offset = nn.Linear(style_dim, style_dim)
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)

    def forward(self, source: torch.Tensor, reference: torch.Tensor, attribute: torch.Tensor | None = None
                ) -> torch.Tensor:
        """`attribute` [B] (indices), needed by (and only by) a model built with `n_attributes`."""
        if not hasattr(self, "offset"):
            return self.transformerlayer(source.transpose(0, 1), reference.transpose(0, 1)).transpose(0, 1)
        if attribute is None:
            raise ValueError("this edit transformer edits one attribute at a time: pass attribute=")
        query = source + self.attribute_query(attribute).unsqueeze(1)
        out = self.transformerlayer(query.transpose(0, 1), reference.transpose(0, 1)).transpose(0, 1)
        return source + self.offset(out)


class LatentAttributeClassifier(nn.Module):
    """Flattened W+ -> (attribute logits [B, n_classes], per-attribute embeddings [B, n_classes, embed_dim]).

    Shared MLP (`fcs`), then one small head per attribute (`indep_fcs` -> embedding, `output_fcs` -> logit),
    so each attribute has its own embedding that the edit loss can compare separately.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (18 * 512, 2048, 512),
        n_classes: int = 40,
        embed_dim: int = 32,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        self.negative_slope = negative_slope  # the edit transformer's classifier: LeakyReLU(0.2); 0 gives ReLU
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.indep_fcs = nn.ModuleList(nn.Linear(widths[-1], embed_dim) for _ in range(n_classes))
        self.output_fcs = nn.ModuleList(nn.Linear(embed_dim, 1) for _ in range(n_classes))

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = codes.flatten(1)
        for fc in self.fcs:
            x = F.leaky_relu(fc(x), self.negative_slope)
        embeddings = torch.stack([fc(x) for fc in self.indep_fcs], 1)
        logits = torch.cat([fc(embeddings[:, i]) for i, fc in enumerate(self.output_fcs)], 1)
        return logits, embeddings


def reference_edit_loss(
    classifier: LatentAttributeClassifier,
    source: torch.Tensor,
    reference: torch.Tensor,
    edited: torch.Tensor,
    attribute: int,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    keep: list[int] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The official training objective of the edit transformer (`coach_ref_edit.calc_loss`).

    Stay close to the source code (L2 in W+); match the reference on the edited attribute's embedding;
    match the source on the other attributes' embeddings (`keep`; default every other one, as the official code).
    `weights` = (l2, ref-attribute, src-attributes).
    """
    _, embed_edit = classifier(edited)
    _, embed_ref = classifier(reference)
    _, embed_src = classifier(source)
    others = keep if keep is not None else [i for i in range(embed_edit.shape[1]) if i != attribute]
    terms = {
        "loss_l2_src_code": F.mse_loss(edited, source),
        "loss_l2_ref_attr": F.mse_loss(embed_edit[:, attribute], embed_ref[:, attribute]),
        "loss_l2_src_attr": F.mse_loss(embed_edit[:, others], embed_src[:, others]),
    }
    loss = sum(w * t for w, t in zip(weights, terms.values(), strict=True))
    return loss, {**{k: v.detach() for k, v in terms.items()}, "loss": loss.detach()}  # no host sync in a step
