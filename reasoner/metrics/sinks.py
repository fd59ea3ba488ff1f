"""Where step metrics go besides `metrics.jsonl`: TensorBoard, Weights & Biases, MLflow (`log.report_to`).

`metrics.jsonl` is always written: it is what plots, reports, resume and `compare_runs` read. The sinks are
mirrors. wandb and mlflow are optional extras (`pip install 'reasoner-rl[wandb]'` / `[mlflow]`) and both are made
offline-safe here, because a training run must never block on, or die of, a tracking server:
- wandb runs offline unless an API key is configured (`WANDB_API_KEY`, or a `wandb login` netrc entry) or
  `WANDB_MODE` says otherwise — without this `wandb.init` would stop and ask for a key on the terminal. Its files
  go to `<out_dir>/wandb`; a resumed run continues the same wandb run (its id is kept in `<out_dir>`).
- mlflow logs to `<out_dir>/mlflow.db` (a local SQLite store; `mlflow ui --backend-store-uri sqlite:///...`)
  unless `MLFLOW_TRACKING_URI` names a server.
A sink that fails while logging is disabled with one warning; training goes on.
"""
from __future__ import annotations

import importlib.util
import math
import os
import warnings
from netrc import netrc
from pathlib import Path
from typing import Any

from reasoner.errors import ReasonerError

SINKS = ("tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
             "mlflow": ("mlflow", "mlflow")}  # sink -> (module to import, extra to install)


def check_sinks(report_to: list[str], key: str = "log.report_to") -> None:
    """Unknown sink names and sinks whose package is missing are one error, before any model is loaded."""
    for name in report_to:
        if name not in SINKS:
            raise ReasonerError(f"{key}: unknown sink {name!r}; valid: {', '.join(SINKS)}")
        module, extra = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ReasonerError(f"{key} includes {name!r} but the {module} package is not installed "
                                f"(pip install 'reasoner-rl[{extra}]')")


class Sink:
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def text(self, step: int, tag: str, text: str) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink(Sink):
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step, scalars):
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def text(self, step, tag, text):
        self.writer.add_text(tag, text, step)

    def close(self):
        self.writer.close()


class WandbSink(Sink):
    def __init__(self, run_dir: Path, *, project: str, name: str, config: dict[str, Any] | None):
        import wandb
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        self.run = wandb.init(project=project, name=name, dir=str(run_dir), config=config, id=run_id,
                              resume="allow", mode=wandb_mode())
        id_file.write_text(self.run.id)

    def log(self, step, scalars):
        self.run.log(scalars, step=step)

    def text(self, step, tag, text):
        self.run.log({tag: text}, step=step)

    def close(self):
        self.run.finish()


def wandb_mode() -> str:
    """`WANDB_MODE` when set; online when a key is configured; offline otherwise (never an interactive prompt)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return "online" if netrc().authenticators(host) else "offline"
    except (OSError, ValueError):  # no ~/.netrc, or an unreadable one
        return "offline"


class MlflowSink(Sink):
    def __init__(self, run_dir: Path, *, project: str, name: str, config: dict[str, Any] | None):
        import mlflow
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):  # mlflow 3 retired the file store: a local SQLite file
            mlflow.set_tracking_uri(f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
        mlflow.set_experiment(project)
        id_file = run_dir / "mlflow_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
        id_file.write_text(self.run.info.run_id)
        if config and run_id is None:
            mlflow.log_params(_flatten(config))

    def log(self, step, scalars):
        self.mlflow.log_metrics({_mlflow_key(k): v for k, v in scalars.items()}, step=step)

    def text(self, step, tag, text):
        self.mlflow.log_text(text, f"{tag}/step-{step}.md")

    def close(self):
        self.mlflow.end_run()


def open_sinks(report_to: list[str], run_dir: Path, *, project: str, name: str,
               config: dict[str, Any] | None = None) -> list[Sink]:
    """The sinks named in `report_to`; one that cannot start (a server down, a broken install) is left out with a
    warning: the run still writes `metrics.jsonl`."""
    check_sinks(report_to)
    sinks: list[Sink] = []
    for sink in report_to:
        try:
            if sink == "tensorboard":
                sinks.append(TensorBoardSink(run_dir))
            elif sink == "wandb":
                sinks.append(WandbSink(run_dir, project=project, name=name, config=config))
            else:
                sinks.append(MlflowSink(run_dir, project=project, name=name, config=config))
        except Exception as e:  # noqa: BLE001 - any failure of a third-party logger
            warnings.warn(f"log.report_to: {sink} could not start ({type(e).__name__}: {e}); logging to "
                          f"metrics.jsonl without it", stacklevel=2)
    return sinks


def finite_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def call_safely(sinks: list[Sink], method: str, *args) -> list[Sink]:
    """Calls `method` on every sink; one that raises is dropped with a warning (a mirror must not stop a run)."""
    alive = []
    for sink in sinks:
        try:
            getattr(sink, method)(*args)
            alive.append(sink)
        except Exception as e:  # noqa: BLE001 - any failure of a third-party logger
            warnings.warn(f"{type(sink).__name__} failed ({type(e).__name__}: {e}); it is disabled for this run",
                          stacklevel=2)
    return alive


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:500]  # mlflow bounds parameter values
    return flat


def _mlflow_key(key: str) -> str:
    """mlflow accepts alphanumerics, `_ - . / space`: `pass@1` becomes `pass_at_1`."""
    return key.replace("@", "_at_")
