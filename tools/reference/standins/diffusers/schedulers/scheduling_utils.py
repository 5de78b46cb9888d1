"""Stand-in: the scheduler base types the official flow-matching solvers import."""
import enum
from dataclasses import dataclass

import torch


class KarrasDiffusionSchedulers(enum.Enum):
    DPMSolverMultistepScheduler = 1
    UniPCMultistepScheduler = 2


@dataclass
class SchedulerOutput:
    prev_sample: torch.Tensor


class SchedulerMixin:
    config_name = 'scheduler_config.json'
