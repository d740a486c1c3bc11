"""The whole config of one run: its method, name, output folder and every section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from rayalign.config.methods import (CriticConfig, DpoConfig, PromptConfig, RewardModelConfig, RewardSourceConfig,
                                     RlhfConfig, RolloutConfig)
from rayalign.config.rlaif import LabelerConfig, RlaifConfig
from rayalign.config.sdg import SdgConfig, TeacherConfig
from rayalign.config.sections import DataConfig, LoggingConfig, ModelConfig, PlacementConfig, TrainConfig, _Strict


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


class RunConfig(_Strict):
    method: Literal["sft", "rm", "dpo", "rlhf", "prompt", "rlaif_label", "rlaif_revise", "sdg_generate", "sdg_label"]
    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: str = "runs"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig
    train: TrainConfig = TrainConfig()
    rm: RewardModelConfig = RewardModelConfig()
    dpo: DpoConfig = DpoConfig()
    rlhf: RlhfConfig = RlhfConfig()
    rollout: RolloutConfig = RolloutConfig()
    rewards: list[RewardSourceConfig] = []
    critic: CriticConfig = CriticConfig()
    prompt: PromptConfig = PromptConfig()
    labeler: LabelerConfig = LabelerConfig()
    rlaif: RlaifConfig = RlaifConfig()
    teacher: TeacherConfig = TeacherConfig()
    sdg: SdgConfig = SdgConfig()
    placement: PlacementConfig = PlacementConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _autocast_over_float32(self):
        if self.train.autocast is not None and self.model.dtype != "float32":
            raise ValueError(f"train.autocast={self.train.autocast} keeps float32 master weights and needs "
                             f"model.dtype=float32, got model.dtype={self.model.dtype} (for pure {self.model.dtype} "
                             "training set train.autocast=null)")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


