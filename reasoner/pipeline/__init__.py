"""The R1 recipe as one resumable pipeline: cold-start SFT -> GRPO -> rejection sampling -> student SFT -> eval."""
from reasoner.pipeline.config import STAGES, PipelineConfig, TinyInitConfig
from reasoner.pipeline.run import PipelineResult, run_pipeline

__all__ = ["STAGES", "PipelineConfig", "TinyInitConfig", "PipelineResult", "run_pipeline"]
