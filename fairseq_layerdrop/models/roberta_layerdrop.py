"""``roberta_layerdrop``: fairseq's ``roberta`` (a BERT-like masked-LM encoder) trained with LayerDrop.

Fan, Grave & Joulin (arXiv 1909.11556) pre-train RoBERTa with LayerDrop 0.2 and prune the encoder to
half its depth (or less) for fine-tuning, without distilling. This model subclasses fairseq's
``RobertaModel`` (same flags, parameters, checkpoint keys ``encoder.sentence_encoder.layers.N.*``,
LM head and classification heads) and only swaps the encoder's layer list, the ``TransformerEncoder``
that ``RobertaEncoder.build_encoder`` builds, for the plugin's seeded LayerDrop list, as
``transformer_layerdrop`` does for its encoder: the structures, rate schedules, draws log, DDP
agreement and exact resume of the other architectures all apply. fairseq's own ``--encoder-layerdrop``
flag sets the rate (fairseq's built-in LayerDrop never runs). With ``--encoder-layerdrop 0`` it
computes exactly what ``--arch roberta`` computes.

    fairseq-train DATA --user-dir DIR --task masked_lm --criterion masked_lm --arch roberta_layerdrop_base ...
"""

from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture, roberta_large_architecture

from ..compat import mark_plugin_args
from ..modules.drop_options import LayerDropOptions, attach_stack_drop, check_stack_options
from ..pruning.on_load import build_pruned_model
from ..pruning.options import PruningOptions
from ..pruning.validation import running_layers
from .transformer_layerdrop import PAPER_LAYERDROP


class _WithoutDefault:
    """A parser that adds fairseq's ``--encoder-layerdrop`` without its default 0, so that the
    architectures can give the paper's rate when the flag is not given (``--encoder-layerdrop 0`` is then
    a choice, not a default)."""

    def __init__(self, parser):
        self._parser = parser

    def add_argument(self, *names, **kwargs):
        if "--encoder-layerdrop" in names:
            kwargs.pop("default", None)
            kwargs["help"] = f"LayerDrop probability of the encoder's layers, in [0, 1) (default {PAPER_LAYERDROP})"
        return self._parser.add_argument(*names, **kwargs)


@register_model("roberta_layerdrop")
class RobertaLayerDropModel(RobertaModel):
    """RoBERTa whose encoder layers are a seeded LayerDrop list. Flag: ``--encoder-layerdrop P``.

    The pruning options are model options too (for ``fairseq-validate`` and ``--model-overrides``, which
    reach only the model); with the ``masked_lm_layerdrop`` / ``sentence_prediction_layerdrop`` tasks they
    are the task's. ``--encoder-layers-to-keep`` is fairseq's roberta flag, read by the plugin's pruning.
    """

    @classmethod
    def add_args(cls, parser):
        RobertaModel.add_args(_WithoutDefault(parser))
        gen_parser_from_dataclass(parser, PruningOptions(), delete_default=True)
        gen_parser_from_dataclass(parser, LayerDropOptions())

    @classmethod
    def build_model(cls, args, task):
        if getattr(args, "layer_gates", False):
            raise ValueError("--layer-gates is not available for roberta_layerdrop (there is no gated masked-LM "
                             "criterion): drop it, and prune with --prune-strategy every-other, search:... or "
                             "contribution:...")
        if getattr(args, "encoder_layerdrop", None) is None:  # --arch roberta_layerdrop runs no architecture function
            args.encoder_layerdrop = PAPER_LAYERDROP
        check_stack_options(args, "encoder")

        def build(args):
            model = super(RobertaLayerDropModel, cls).build_model(args, task)
            attach_stack_drop(model.encoder.sentence_encoder, args, "encoder")
            return model

        model = build_pruned_model(build, args, args, ("encoder",))
        mark_plugin_args(args)
        return model

    # fairseq's AdaPruning regularizers (--mha-reg-scale-factor, --ffn-reg-scale-factor) iterate the encoder's
    # layers; iterating the drop list in training mode is a LayerDrop step, so they see every layer instead

    def _get_adaptive_head_loss(self):
        with running_layers(self, {"encoder": range(len(self.encoder.sentence_encoder.layers))}):
            return super()._get_adaptive_head_loss()

    def _get_adaptive_ffn_loss(self):
        with running_layers(self, {"encoder": range(len(self.encoder.sentence_encoder.layers))}):
            return super()._get_adaptive_ffn_loss()


def _paper_layerdrop(args):
    if getattr(args, "encoder_layerdrop", None) is None:
        args.encoder_layerdrop = PAPER_LAYERDROP


@register_model_architecture("roberta_layerdrop", "roberta_layerdrop")
def roberta_layerdrop(args):
    """fairseq's ``roberta`` (base: 12 layers of width 768) with LayerDrop 0.2."""
    _paper_layerdrop(args)
    base_architecture(args)


@register_model_architecture("roberta_layerdrop", "roberta_layerdrop_base")
def roberta_layerdrop_base(args):
    roberta_layerdrop(args)


@register_model_architecture("roberta_layerdrop", "roberta_layerdrop_large")
def roberta_layerdrop_large(args):
    """fairseq's ``roberta_large`` (24 layers of width 1024) with LayerDrop 0.2."""
    _paper_layerdrop(args)
    roberta_large_architecture(args)


@register_model_architecture("roberta_layerdrop", "roberta_layerdrop_tiny")
def roberta_layerdrop_tiny(args):
    """4 layers of width 64 (feed-forward 128, 4 heads), LayerDrop 0.2: for tests and the mini recipe on a CPU."""
    args.encoder_layers = getattr(args, "encoder_layers", 4)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 128)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    roberta_layerdrop(args)
