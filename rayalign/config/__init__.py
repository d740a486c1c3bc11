"""One typed schema for every run, loaded from YAML recipes with dotted overrides.

A recipe is a YAML file (or the name of one shipped in `rayalign/recipes/`). Overrides
such as `train.lr=1e-4` are applied on top. Unknown keys and wrong types raise
`ConfigError` naming the file, the line and the key.

    sections.py   what every run shares: model, data, train, placement, logging
    methods.py    each method's own section: rm, dpo, rlhf (rewards, rollout, critic), prompt
    rlaif.py      the AI labeler and the RLAIF tasks (labelling, critique and revise)
    sdg.py        the teacher and synthetic data generation (self-instruct, filters, labelling)
    run.py        RunConfig, the whole run
    loading.py    recipes, overrides, error messages with file and line
"""

from rayalign.config.loading import (RECIPES_DIR, apply_override, dump_config, load_config, resolve_recipe,
                                     save_config)
from rayalign.config.methods import (CriticConfig, DpoConfig, PromptConfig, PromptVariantConfig, RewardModelConfig,
                                     RewardSourceConfig, RlhfConfig, RolloutConfig)
from rayalign.config.rlaif import ChatModelConfig, LabelerConfig, RlaifConfig
from rayalign.config.sdg import SdgConfig, SdgFiltersConfig, TeacherConfig
from rayalign.config.run import ConfigError, RunConfig
from rayalign.config.sections import (DataConfig, FreezeConfig, LoggingConfig, LoraConfig, ModelConfig,
                                      PlacementConfig, TrainConfig)

__all__ = [
    "RECIPES_DIR", "apply_override", "dump_config", "load_config", "resolve_recipe", "save_config",
    "CriticConfig", "DpoConfig", "PromptConfig", "PromptVariantConfig", "RewardModelConfig", "RewardSourceConfig", "RlhfConfig", "RolloutConfig",
    "ChatModelConfig", "LabelerConfig", "RlaifConfig", "SdgConfig", "SdgFiltersConfig", "TeacherConfig", "ConfigError", "RunConfig",
    "DataConfig", "FreezeConfig", "LoggingConfig", "LoraConfig", "ModelConfig", "PlacementConfig", "TrainConfig",
]
