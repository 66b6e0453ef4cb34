"""Build a fairseq task and model in this process exactly as ``fairseq-train`` would from its flags."""

import os

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fairseq_layerdrop")


def build_model(data_dir, *args):
    """Return ``(model, task)`` for ``fairseq-train DATA_DIR --user-dir PLUGIN --cpu ARGS...``."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    parsed = options.parse_args_and_arch(parser, [str(data_dir), "--user-dir", PLUGIN, "--cpu", *map(str, args)])
    cfg = convert_namespace_to_omegaconf(parsed)
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model), task
