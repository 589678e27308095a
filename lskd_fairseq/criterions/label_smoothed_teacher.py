"""Criterion ``label_smoothed_teacher``: label-smoothed cross-entropy in the paper's convention.

``--label-smoothing a`` puts ``a/V`` on every token and ``1 - a + a/V`` on the gold one, as the paper's
teachers were trained. fairseq's ``label_smoothed_cross_entropy`` spreads ``eps/(V-1)`` over the wrong
tokens instead, so it gives the same targets with ``eps = a·(V-1)/V`` (``lskd.fairseq_epsilon``).
"""

import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II, DictConfig

from lskd.checks import check_smoothing
from lskd.errors import InvalidConfig
from lskd.losses import label_smoothed_nll
from lskd_fairseq.checkpoints import record_dictionaries
from lskd_fairseq.launch import check_data_parallel_launch


def check_full_vocabulary_logits(adaptive_softmax: bool) -> None:
    """The criteria read the decoder's output as logits over the whole vocabulary; an adaptive softmax gives
    a head over its first cutoff only (fairseq's ``adaptive_loss`` criterion is the one made for it)."""
    if adaptive_softmax:
        raise InvalidConfig(
            "--adaptive-softmax-cutoff: the lskd criteria need the decoder's logits over the whole vocabulary, "
            "which an adaptive softmax does not give; train without --adaptive-softmax-cutoff"
        )


@dataclass
class LabelSmoothedTeacherConfig(FairseqDataclass):
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "alpha in [0, 1): target = (1-alpha)*onehot + alpha/V (the paper's convention)"},
    )
    ignore_prefix_size: int = field(default=0, metadata={"help": "ignore the first N target tokens"})
    sentence_avg: bool = II("optimization.sentence_avg")


class SmoothedTargetCriterion(FairseqCriterion):
    """Shared plumbing: student logits and targets as [N, V] / [N], accuracy and fairseq's base-2 logs."""

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0):
        super().__init__(task)
        check_smoothing(label_smoothing)
        check_data_parallel_launch()
        record_dictionaries(task)  # every checkpoint then carries them: a teacher is checked from itself
        self.sentence_avg = sentence_avg
        self.smoothing = label_smoothing
        self.ignore_prefix_size = ignore_prefix_size

    @classmethod
    def build_criterion(cls, cfg, task):
        # fairseq builds the model before the criterion, from options of the same configuration: a model
        # with an adaptive softmax stops here, before any step (which would leave a crash.pt).
        model_options = cfg._get_root().get("model") if isinstance(cfg, DictConfig) else None
        check_full_vocabulary_logits(getattr(model_options, "adaptive_softmax_cutoff", None) is not None)
        return super().build_criterion(cfg, task)

    def drop_prefix(self, tensor):
        """[B, T, ...] with the first ``ignore_prefix_size`` time steps removed, flattened to [B*T, ...]."""
        if self.ignore_prefix_size > 0:
            tensor = tensor[:, self.ignore_prefix_size :]
        return tensor.reshape(-1, *tensor.shape[2:])

    def logits_and_target(self, model, net_output, sample):
        check_full_vocabulary_logits(getattr(getattr(model, "decoder", None), "adaptive_softmax", None) is not None)
        return self.drop_prefix(net_output[0]), self.drop_prefix(model.get_targets(sample, net_output))

    @staticmethod
    def reduced(tensor, reduce: bool):
        """Per-token values summed, or with ``reduce=False`` kept as fairseq's own criteria give them:
        one row per target position, ``[B*T, 1]``, 0 at padding."""
        return tensor.sum() if reduce else tensor.unsqueeze(-1)

    def logging_output(self, sample, loss, nll_loss, logits, target):
        mask = target.ne(self.padding_idx)
        n_correct = (logits.argmax(-1).eq(target) & mask).sum()
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        log = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            "n_correct": utils.item(n_correct.data),
            "total": utils.item(mask.sum().data),
        }
        return sample_size, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size, ntokens = total("sample_size"), total("ntokens")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        n_tokens_scored = utils.item(total("total"))
        if n_tokens_scored > 0:
            metrics.log_scalar("total", n_tokens_scored)
            metrics.log_scalar("n_correct", utils.item(total("n_correct")))
            metrics.log_derived(
                "accuracy",
                lambda meters: (
                    round(meters["n_correct"].sum * 100.0 / meters["total"].sum, 3)
                    if meters["total"].sum > 0
                    else float("nan")
                ),
            )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


@register_criterion("label_smoothed_teacher", dataclass=LabelSmoothedTeacherConfig)
class LabelSmoothedTeacherCriterion(SmoothedTargetCriterion):
    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        logits, target = self.logits_and_target(model, net_output, sample)
        lprobs = F.log_softmax(logits.float(), dim=-1)
        loss, nll_loss = label_smoothed_nll(lprobs, target, self.smoothing, self.padding_idx)
        loss, nll_loss = self.reduced(loss, reduce), self.reduced(nll_loss, reduce)
        sample_size, log = self.logging_output(sample, loss, nll_loss, logits, target)
        return loss, sample_size, log
