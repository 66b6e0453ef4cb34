"""Build a fairseq task and model in this process exactly as ``fairseq-train`` would from its flags, or load
a checkpoint as ``fairseq-generate`` / ``fairseq-eval-lm`` would (for tools, benchmarks and tests)."""

from fairseq_layerdrop.cli.dir import user_dir

PLUGIN = user_dir()


def build_model(data_dir, *args):
    """Return ``(model, task)`` for ``fairseq-train DATA_DIR --user-dir PLUGIN --cpu ARGS...``."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    parsed = options.parse_args_and_arch(parser, [str(data_dir), "--user-dir", PLUGIN, "--cpu", *map(str, args)])
    cfg = convert_namespace_to_omegaconf(parsed)
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model), task


def load_models(data_dir, checkpoint, *args, parser="generation"):
    """Load a checkpoint as ``fairseq-generate`` (or ``parser="eval_lm"``) would with these flags.

    Returns ``(model, task)`` with the model in eval mode.
    """
    from fairseq import checkpoint_utils, options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    make_parser = options.get_eval_lm_parser if parser == "eval_lm" else options.get_generation_parser
    parsed = options.parse_args_and_arch(
        make_parser(), [str(data_dir), "--user-dir", PLUGIN, "--cpu", "--path", str(checkpoint), *map(str, args)]
    )
    cfg = convert_namespace_to_omegaconf(parsed)
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], task=task)
    return models[0].eval(), task
