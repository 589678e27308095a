"""Build a fairseq task, model and criterion in-process from the same arguments ``fairseq-train`` takes.

The benchmarks and the tests use it to run the exact objects a training run would, without a subprocess;
it lives here rather than in the plugin because no command of the project needs it.
"""

import os
from typing import Sequence

from fairseq import options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import lskd_fairseq

PLUGIN_DIR = os.path.dirname(os.path.abspath(lskd_fairseq.__file__))


def build_training(arguments: Sequence[str]):
    """(task, model, criterion) for ``fairseq-train`` ``arguments`` (data folder first; the plugin is added)."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [*map(str, arguments), "--user-dir", PLUGIN_DIR])
    cfg = convert_namespace_to_omegaconf(args)
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return task, model, criterion
