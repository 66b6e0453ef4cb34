"""``transformer_lm_layerdrop``: fairseq's decoder-only ``transformer_lm`` trained with LayerDrop.

Fan, Grave & Joulin (arXiv 1909.11556) train a 16-layer adaptive-input language model on
WikiText-103 with LayerDrop 0.2 (18.3 test perplexity) and prune it to 8 layers by keeping
every other layer. This model subclasses fairseq's ``TransformerLanguageModel`` and only
swaps the decoder's layer list for a reproducibly seeded LayerDrop list; with
``--decoder-layerdrop 0`` it computes exactly what ``--arch transformer_lm`` computes.

Layer norm, as fairseq decides it. ``--arch transformer_lm`` and ``--arch transformer_lm_layerdrop`` take
their config's default, post-norm (a layer norm after each block, no final layer norm), unless
``--decoder-normalize-before`` (pre-norm, with a final layer norm). Every named variant (fairseq's
``transformer_lm_big``, ``_wiki103``, ``_gpt``..., and ``_tiny``/``_wiki103`` here) runs fairseq's
``base_lm_architecture``, which sets ``decoder_normalize_before = True`` whatever the flags say: pre-norm.
``--decoder-post-norm`` makes any of these post-norm (fairseq's own variants cannot be), and is refused
beside ``--decoder-normalize-before``.
"""

from dataclasses import dataclass, field

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer_lm import (
    TransformerLanguageModel,
    TransformerLanguageModelConfig,
    base_lm_architecture,
    transformer_lm_baevski_wiki103,
)
from fairseq.utils import safe_getattr
from omegaconf import II

from ..compat import building_from_checkpoint, mark_plugin_state_dict
from ..modules.layer_gates import add_layer_gates, check_gated_training
from ..modules.drop_options import DecoderLayerDropOptions, attach_stack_drop, check_stack_options
from ..pruning.on_load import build_pruned_model
from ..pruning.options import PruningOptions
from .transformer_layerdrop import PAPER_LAYERDROP


@dataclass
class TransformerLMLayerDropConfig(TransformerLanguageModelConfig, PruningOptions, DecoderLayerDropOptions):
    """fairseq's LM config, LayerDrop 0.2 by default, and the pruning options as model options
    (for ``fairseq-validate`` and ``--model-overrides``, which reach only the model)."""

    decoder_layerdrop: float = field(
        default=PAPER_LAYERDROP,
        metadata={"help": "LayerDrop probability for the decoder, in [0, 1) (Fan et al. 2019)"},
    )
    decoder_post_norm: bool = field(
        default=False,
        metadata={
            "help": "post-layer-norm decoder (a layer norm after each block, no final layer norm), also for the "
            "named variants, which fairseq's base_lm_architecture makes pre-norm; refused with "
            "--decoder-normalize-before"
        },
    )
    seed: int = II("common.seed")


def check_post_norm(args) -> None:
    """Refuse ``--decoder-post-norm`` beside ``--decoder-normalize-before`` (call before an architecture sets it)."""
    if safe_getattr(args, "decoder_post_norm", False) and safe_getattr(args, "decoder_normalize_before", False):
        raise ValueError(
            "--decoder-post-norm asks for a post-norm decoder and --decoder-normalize-before for a pre-norm one: "
            "give one of them"
        )


def apply_post_norm(args) -> None:
    """After fairseq's ``base_lm_architecture`` (which sets pre-norm): post-norm if ``--decoder-post-norm``."""
    if safe_getattr(args, "decoder_post_norm", False):
        args.decoder_normalize_before = False


@register_model("transformer_lm_layerdrop", dataclass=TransformerLMLayerDropConfig)
class TransformerLMLayerDrop(TransformerLanguageModel):
    """Decoder-only transformer LM with seeded LayerDrop. Flag: ``--decoder-layerdrop P``."""

    @classmethod
    def build_model(cls, args, task):
        if not building_from_checkpoint():  # training flags: refused before any training data is read
            check_gated_training(args)
        check_post_norm(args)  # --arch transformer_lm_layerdrop: fairseq runs no architecture function
        check_stack_options(args, "decoder")

        def build(args):
            model = super(TransformerLMLayerDrop, cls).build_model(args, task)
            attach_stack_drop(model.decoder, args, "decoder")
            if safe_getattr(args, "layer_gates", False):
                add_layer_gates(model, {"decoder": "--decoder-layerdrop"})
            return model

        return build_pruned_model(build, args, args, ("decoder",))

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        top_level = not args and kwargs.get("destination") is None
        return mark_plugin_state_dict(state) if top_level else state


@register_model_architecture("transformer_lm_layerdrop", "transformer_lm_layerdrop_wiki103")
def transformer_lm_layerdrop_wiki103(args):
    """Adaptive inputs, 16 layers of width 1024 (Baevski & Auli), LayerDrop 0.2: the paper's 18.3 PPL model."""
    check_post_norm(args)
    args.decoder_layerdrop = safe_getattr(args, "decoder_layerdrop", PAPER_LAYERDROP)
    transformer_lm_baevski_wiki103(args)
    apply_post_norm(args)


@register_model_architecture("transformer_lm_layerdrop", "transformer_lm_layerdrop_tiny")
def transformer_lm_layerdrop_tiny(args):
    """6 layers of width 64, embeddings and softmax of width 64 too: for tests and the demo on a CPU.

    fairseq's LM config gives ``--decoder-input-dim``/``--decoder-output-dim`` a default of 512 that
    ``base_lm_architecture`` cannot tell from a user's value, so, like fairseq's GPT-3 variants, this
    variant ties both to ``--decoder-embed-dim``. Pre-norm with a final layer norm (``base_lm_architecture``),
    post-norm with ``--decoder-post-norm``.
    """
    check_post_norm(args)
    args.decoder_layerdrop = safe_getattr(args, "decoder_layerdrop", PAPER_LAYERDROP)
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", 64)
    args.decoder_input_dim = args.decoder_output_dim = args.decoder_embed_dim
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", 128)
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = safe_getattr(args, "decoder_layers", 6)
    base_lm_architecture(args)
    apply_post_norm(args)
