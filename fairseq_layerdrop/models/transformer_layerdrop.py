"""``transformer_layerdrop``: fairseq's encoder-decoder ``transformer`` trained with LayerDrop.

Fan, Grave & Joulin (arXiv 1909.11556) drop whole layers with rate p = 0.2 while training
the WMT16 En-De Transformer, then prune to any depth at test time without finetuning.
This model subclasses fairseq's ``TransformerModel`` (same flags, same parameters, same
checkpoint keys) and only swaps each stack's layer list for a reproducibly seeded
LayerDrop list. With ``--encoder-layerdrop 0 --decoder-layerdrop 0`` it computes exactly
what ``--arch transformer`` computes.
"""

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerModel
from fairseq.models.transformer.transformer_legacy import (
    base_architecture,
    transformer_wmt_en_de_big,
)

from fairseq.dataclass.utils import gen_parser_from_dataclass

from ..compat import building_from_checkpoint, mark_plugin_args
from ..modules.layer_gates import add_layer_gates, check_gated_training
from ..modules.drop_options import LayerDropOptions, attach_stack_drop, check_stack_options
from ..pruning.on_load import build_pruned_model
from ..pruning.options import PruningOptions

PAPER_LAYERDROP = 0.2


@register_model("transformer_layerdrop")
class TransformerLayerDropModel(TransformerModel):
    """Encoder-decoder transformer with seeded LayerDrop in both stacks.

    Flags: ``--encoder-layerdrop P``, ``--decoder-layerdrop P`` (fairseq's names; each in [0, 1)).
    The pruning options are model options too (for ``fairseq-validate`` and ``--model-overrides``,
    which reach only the model); with the ``translation_layerdrop`` task they are the task's.
    """

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        gen_parser_from_dataclass(parser, PruningOptions(), delete_default=True)
        gen_parser_from_dataclass(parser, LayerDropOptions())

    @classmethod
    def build_model(cls, args, task):
        if not building_from_checkpoint():  # training flags: refused before any training data is read
            check_gated_training(args)
        check_stack_options(args, "encoder")
        check_stack_options(args, "decoder")

        def build(args):
            model = super(TransformerLayerDropModel, cls).build_model(args, task)
            attach_stack_drop(model.encoder, args, "encoder")
            attach_stack_drop(model.decoder, args, "decoder")
            if getattr(args, "layer_gates", False):
                add_layer_gates(model, {"encoder": "--encoder-layerdrop", "decoder": "--decoder-layerdrop"})
            return model

        model = build_pruned_model(build, args, args, ("encoder", "decoder"))
        mark_plugin_args(args)
        return model


def _paper_layerdrop(args):
    args.encoder_layerdrop = getattr(args, "encoder_layerdrop", PAPER_LAYERDROP)
    args.decoder_layerdrop = getattr(args, "decoder_layerdrop", PAPER_LAYERDROP)


@register_model_architecture("transformer_layerdrop", "transformer_layerdrop")
def transformer_layerdrop(args):
    """fairseq's ``transformer`` base settings with LayerDrop 0.2 in both stacks."""
    _paper_layerdrop(args)
    base_architecture(args)


@register_model_architecture("transformer_layerdrop", "transformer_layerdrop_wmt_en_de")
def transformer_layerdrop_wmt_en_de(args):
    transformer_layerdrop(args)


@register_model_architecture("transformer_layerdrop", "transformer_layerdrop_wmt_en_de_big")
def transformer_layerdrop_wmt_en_de_big(args):
    """Transformer big (Ott et al. 2018 settings, as fairseq's ``transformer_wmt_en_de_big``)."""
    _paper_layerdrop(args)
    transformer_wmt_en_de_big(args)


@register_model_architecture("transformer_layerdrop", "transformer_layerdrop_wmt_en_de_12_6")
def transformer_layerdrop_wmt_en_de_12_6(args):
    """12 encoder and 6 decoder layers, big dimensions: the paper's 30.2 BLEU model."""
    args.encoder_layers = getattr(args, "encoder_layers", 12)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    transformer_layerdrop_wmt_en_de_big(args)


@register_model_architecture("transformer_layerdrop", "transformer_layerdrop_tiny")
def transformer_layerdrop_tiny(args):
    """6 + 6 layers of width 64: for tests and the demo on a CPU."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 128)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    transformer_layerdrop(args)
