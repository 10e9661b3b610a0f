"""The toy task's configuration: each field a flag of --task=toy (train_steps and packed are named like BERT's)."""
import dataclasses
from typing import Optional

from tf_gp2bm.tasks.base import TaskConfig, check, param


@dataclasses.dataclass(frozen=True)
class Config(TaskConfig):
  train_epochs: int = param(6, "Epochs of training; one eval after each.")
  hidden_units: int = param(16, "Width of the MLP's hidden layer.", fixed=True)
  train_steps: Optional[int] = param(None, "Stop after this many updates (a flag of BERT's name).")
  packed: bool = param(False, "Unused; a bool of BERT's name.")

  def check_values(self):
    super().check_values()
    check(self.train_epochs >= 1, "train_epochs", self.train_epochs, "an integer >= 1")
    check(self.hidden_units >= 1, "hidden_units", self.hidden_units, "an integer >= 1")
