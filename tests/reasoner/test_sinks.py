"""`log.report_to`: metrics.jsonl always, mirrored to TensorBoard / wandb / mlflow; offline-safe, never fatal."""
import json
import warnings

import pytest

from reasoner.config import ConfigError, load_config
from reasoner.errors import ReasonerError
from reasoner.metrics import sinks
from reasoner.metrics.logger import MetricsLogger, read_metrics
from reasoner.training.config import TrainConfig


def test_unknown_sinks_and_the_old_key_are_named():
    with pytest.raises(ConfigError, match="log.report_to: unknown sink 'comet'; valid: tensorboard, wandb, mlflow"):
        load_config(TrainConfig, None, ["log.report_to=[tensorboard, comet]"])
    with pytest.raises(ConfigError, match="'log.tensorboard' was renamed: use 'log.report_to'"):
        load_config(TrainConfig, None, ["log.tensorboard=false"])
    assert load_config(TrainConfig, None, ["log.report_to=[]"]).log.report_to == []


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    real = sinks.importlib.util.find_spec
    monkeypatch.setattr(sinks.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(ReasonerError, match=r"includes 'wandb' but the wandb package is not installed "
                                            r"\(pip install 'reasoner-rl\[wandb\]'\)"):
        sinks.check_sinks(["tensorboard", "wandb"])


def test_wandb_never_prompts_for_a_key(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    assert sinks.wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.delenv("NETRC")
    assert sinks.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert sinks.wandb_mode() == "disabled"


class _Broken(sinks.Sink):
    def log(self, step, scalars):
        raise ConnectionError("tracking server down")


def test_a_failing_sink_is_dropped_and_metrics_jsonl_keeps_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(sinks, "open_sinks", lambda *a, **k: [_Broken()])
    monkeypatch.setattr("reasoner.metrics.logger.open_sinks", lambda *a, **k: [_Broken()])
    logger = MetricsLogger(tmp_path, report_to=[])
    with pytest.warns(UserWarning, match="_Broken failed .*tracking server down.*disabled"):
        logger.log(1, {"loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dropped: no second warning
        logger.log(2, {"loss": 0.5})
    logger.close()
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.0, 0.5]


def test_scalars_exclude_text_bools_and_non_finite_values():
    import torch
    assert sinks.finite_scalars({"a": 1, "b": float("nan"), "c": "x", "d": True, "e": torch.tensor(2.5)}) == \
        {"a": 1.0, "e": 2.5}


def test_mlflow_logs_every_step_to_a_local_store_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is an optional extra (pip install 'reasoner-rl[mlflow]')")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = MetricsLogger(tmp_path, report_to=["mlflow"], project="p", config={"algorithm": {"kl_beta": 0.0}})
    first.log(1, {"pass@1": 0.25, "note": "text"})
    first.close()
    second = MetricsLogger(tmp_path, report_to=["mlflow"], project="p")  # a resumed run
    second.log(2, {"pass@1": 0.5})
    second.close()
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    run_id = (tmp_path / "mlflow_run_id").read_text()
    history = client.get_metric_history(run_id, "pass_at_1")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert client.get_run(run_id).data.params["algorithm.kl_beta"] == "0.0"


def test_wandb_offline_writes_its_run_under_out_dir_and_resumes_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is an optional extra (pip install 'reasoner-rl[wandb]')")
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = MetricsLogger(tmp_path, report_to=["wandb"], project="p", run_name="r")
    logger.log(1, {"loss": 1.0})
    logger.close()
    run_id = (tmp_path / "wandb_run_id").read_text()
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert runs and list(runs[0].glob("*.wandb"))
    again = MetricsLogger(tmp_path, report_to=["wandb"], project="p")
    again.log(2, {"loss": 0.5})
    again.close()
    assert (tmp_path / "wandb_run_id").read_text() == run_id
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
