"""The training loop: run directory contents, exact resume after a kill, config checks, atomic writes, CLI errors."""

import csv
import json
import pickle

import pytest
import torch

from rims_rl.tasks import TrainConfig, train
from rims_rl.tasks import training as training_module
from rims_rl.tasks.copying import CopyingTask
from rims_rl.utils import atomic_torch_save, atomic_write_text
from tests.helpers import load_script

CORE = {"num_units": 4, "k_active": 2, "hidden_size": 8, "input_value_size": 16}
OPTIONS = {"copy_length": 2, "train_gap": 3, "num_symbols": 3, "test_gaps": [3, 6], "eval_sequences": 16}


def _config(**kw):
    fields = dict(task="copying", model="rim", seed=1, steps=6, batch_size=4, eval_every=3, core=CORE, options=OPTIONS)
    return TrainConfig(**{**fields, **kw})


def test_run_directory_holds_metrics_events_checkpoint_and_config(tmp_path):
    rows = train(_config(), tmp_path, progress=False, log=lambda m: None)
    assert [r["step"] for r in rows] == [3, 6]
    assert {"train/loss", "test3/ce", "test6/ce", "test6/copy_acc"} <= set(rows[0])
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    with open(tmp_path / "metrics.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in csv_rows] == [3, 6]
    assert float(csv_rows[1]["test6/ce"]) == pytest.approx(rows[1]["test6/ce"])
    assert list(tmp_path.glob("events.out.tfevents.*"))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 6 and ckpt["config"] == _config().to_dict()
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())).to_dict()["core"] == CORE
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


class _Killed(Exception):
    pass


@pytest.mark.parametrize(
    "schedule, checkpoint_seconds, resumed_at", [("constant", 600, 3), ("cosine", 600, 3), ("constant", 0, 4)]
)
def test_a_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch, schedule, checkpoint_seconds, resumed_at):
    """Killed during step 5: it resumes from the evaluation's checkpoint at step 3 or, with checkpoints due at every
    step between evaluations (``CHECKPOINT_SECONDS`` 0), from step 4, and ends as an uninterrupted run does."""
    monkeypatch.setattr(training_module, "CHECKPOINT_SECONDS", checkpoint_seconds)
    full = train(_config(lr_schedule=schedule), tmp_path / "full", progress=False, log=lambda m: None)

    calls = {"n": 0}

    class Dies(CopyingTask):
        def loss(self, model, batch):
            calls["n"] += 1
            if calls["n"] == 5:  # killed during step 5
                raise _Killed
            return super().loss(model, batch)

    monkeypatch.setitem(training_module.TASKS, "copying", Dies)
    with pytest.raises(_Killed):
        train(_config(lr_schedule=schedule), tmp_path / "killed", progress=False, log=lambda m: None)
    monkeypatch.setitem(training_module.TASKS, "copying", CopyingTask)
    messages = []
    resumed = train(_config(lr_schedule=schedule), tmp_path / "killed", progress=False, log=messages.append)
    assert messages[0] == f"resumed {tmp_path / 'killed'} at step {resumed_at}/6 on cpu"
    assert messages[1].startswith("step=6 ")  # one line per evaluation without a progress bar
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(full)  # same data stream, dropout and weights after the resume
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_more_steps_extend_a_finished_run(tmp_path):
    train(_config(), tmp_path, progress=False, log=lambda m: None)
    rows = train(
        _config().__class__(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None
    )
    assert [r["step"] for r in rows] == [3, 6, 9]


def test_a_finished_run_is_left_as_it_is_and_may_resume_with_other_speed_settings(tmp_path):
    rows = train(_config(num_threads=1), tmp_path, progress=False, log=lambda m: None)
    files = sorted(p.name for p in tmp_path.iterdir())
    messages = []
    again = train(_config(num_threads=2, compile=False), tmp_path, progress=False, log=messages.append)
    assert again == rows and messages == [f"{tmp_path} is finished (step 6); nothing to do"]
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no new event file either
    more = TrainConfig(**{**_config(num_threads=2, compile=False).to_dict(), "steps": 9})
    train(more, tmp_path, progress=False, log=lambda m: None)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["num_threads"] == 2 and saved["compile"] is False  # the settings it ran with


@pytest.mark.parametrize("model, env_var, compiled", [("rim", "1", True), ("rim", "0", False), ("lstm", "1", False)])
def test_prepare_model_compiles_the_rim_for_training_only(monkeypatch, model, env_var, compiled):
    """The RIM's loop is compiled for training only (evaluation runs eagerly), unless ``compile`` is off or
    ``RIMS_RL_COMPILE=0``."""
    monkeypatch.setenv("RIMS_RL_COMPILE", env_var)
    config = _config(model=model)
    prepared = training_module.prepare_model(config, config.make_task().make_model())
    if model == "rim":
        layer = prepared.core.rnn.layers[0]
        assert (layer._compiled_loop is not None) == compiled
        assert layer._compile_inference is not compiled  # evaluation stays eager when compiled
    off = training_module.prepare_model(_config(model=model, compile=False), config.make_task().make_model())
    assert all(getattr(m, "_compiled_loop", None) is None for m in off.modules())


@pytest.mark.parametrize("compile_", [True, False])
def test_training_says_when_it_compiles(tmp_path, monkeypatch, compile_):
    """With the default ``compile: true`` the run says its first step compiles (torch.compile stubbed out
    here: the loop runs eagerly through the compiled path) and trains; with ``compile: false`` it does not."""
    monkeypatch.setenv("RIMS_RL_COMPILE", "1")
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    messages = []
    rows = train(_config(steps=2, eval_every=2, compile=compile_), tmp_path, progress=False, log=messages.append)
    said = any("the first training step compiles the RIM loop" in m for m in messages)
    assert said == compile_ and [r["step"] for r in rows] == [2]


def test_training_flushes_denormal_floats(tmp_path):
    """After ``train`` (which calls ``flush_denormals``), a denormal product is zero on this thread."""
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-30]) * torch.tensor([1e-10]) != 0  # 1e-40: a denormal float, kept
    train(_config(steps=1, eval_every=1), tmp_path, progress=False, log=lambda m: None)
    assert torch.tensor([1e-30]) * torch.tensor([1e-10]) == 0


def test_batches_follow_the_model_to_its_device():
    from rims_rl.tasks.task import to_model_device

    model = torch.nn.Linear(2, 2).to(torch.float64).to("meta")  # another device than the CPU batch
    x, y = to_model_device(model, torch.zeros(3), torch.ones(3, dtype=torch.long))
    assert x.device.type == y.device.type == "meta" and y.dtype == torch.long


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    train(_config(), tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="different config"):
        train(_config(lr=0.5), tmp_path, progress=False, log=lambda m: None)


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(ValueError, match="unknown train config key.*'stepz'"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        TrainConfig(model="transformer")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)


def test_atomic_writes_keep_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_torch_save({"f": lambda: 0}, path)  # a lambda cannot be pickled: the write fails midway
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    atomic_write_text("x", tmp_path / "sub" / "t.txt")
    assert (tmp_path / "sub" / "t.txt").read_text() == "x"


def _script():
    """``scripts/train_supervised.py`` as a module."""
    return load_script("scripts/train_supervised.py")


def test_script_reports_bad_input_in_one_line(tmp_path, capsys):
    script = _script()
    cases = [
        (["--task", "sorting"], "unknown task 'sorting'; allowed: ['balls', 'copying', 'mnist']"),
        (["--task", "copying", "--model", "tcn"], "unknown model 'tcn'"),
        (
            ["--task", "mnist", "--data-dir", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")],
            "looked for t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
        ),
        (["--resume", str(tmp_path / "nothing")], "no config.json there"),
        (["--task", "copying", "--hp", "options.gap"], "--hp expects key=value"),
        (
            ["--task", "copying", "--hp", "options.gapp=3", "--run-dir", str(tmp_path / "r")],
            "unknown copying option(s) ['gapp']; allowed: ",
        ),
        (
            ["--task", "copying", "--hp", "stepz=3"],
            "unknown train config key(s) ['stepz'] in copying.yaml or its overrides; allowed: ",
        ),
        (
            ["--task", "copying", "--device", "gpu", "--run-dir", str(tmp_path / "r")],
            "unknown --device 'gpu'; allowed: cpu, cuda, cuda:N",
        ),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (
                ["--task", "copying", "--device", "cuda", "--run-dir", str(tmp_path / "r")],
                "--device cuda: torch sees no CUDA GPU here; use --device cpu",
            )
        )
    for argv, message in cases:
        assert script.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


def test_report_summarises_finished_runs_over_seeds(tmp_path):
    from rims_rl.tasks.report import write_report

    for seed in (1, 2):
        options = {**OPTIONS, "test_gaps": [50, 200]}  # the gaps the report's headline names
        config = TrainConfig(**{**_config().to_dict(), "seed": seed, "options": options})
        train(config, tmp_path / "runs" / f"copying-rim-s{seed}", progress=False, log=lambda m: None)
    summary = write_report(tmp_path / "runs", tmp_path / "out")
    ce = next(s for s in summary if s["metric"] == "test200/ce")
    finals = [json.loads((tmp_path / "runs" / f"copying-rim-s{s}" / "metrics.json").read_text())[-1] for s in (1, 2)]
    assert ce["seeds"] == 2
    assert ce["mean"] == pytest.approx(sum(f[ce["metric"]] for f in finals) / 2)
    assert (tmp_path / "out" / "copying.png").stat().st_size > 1000
    assert len((tmp_path / "out" / "summary.csv").read_text().splitlines()) == 3


def test_cosine_schedule_decays_to_zero(tmp_path, monkeypatch):
    config = _config(lr_schedule="cosine")
    assert [config.lr_at(s) for s in (0, 3, 6)] == pytest.approx([1e-3, 5e-4, 0.0])
    assert _config().lr_at(5) == 1e-3  # constant by default
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'; allowed"):
        _config(lr_schedule="step")
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train(config, tmp_path, progress=False, log=lambda m: None)
    assert seen == pytest.approx([config.lr_at(s) for s in range(6)])


def test_a_run_saved_before_lr_schedule_existed_resumes(tmp_path):
    train(_config(), tmp_path, progress=False, log=lambda m: None)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["lr_schedule"]  # config.json files written before the option was added
    (tmp_path / "config.json").write_text(json.dumps(saved))
    rows = train(TrainConfig(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None)
    assert [r["step"] for r in rows] == [3, 6, 9]


def test_report_keeps_runs_with_different_settings_apart(tmp_path):
    from rims_rl.tasks.report import write_report

    options = {**OPTIONS, "test_gaps": [50, 200]}
    for seed, schedule in ((1, "constant"), (2, "constant"), (1, "cosine")):
        config = TrainConfig(**{**_config().to_dict(), "seed": seed, "options": options, "lr_schedule": schedule})
        train(config, tmp_path / "runs" / f"copying-rim-{schedule}-s{seed}", progress=False, log=lambda m: None)
    summary = [s for s in write_report(tmp_path / "runs", tmp_path / "out") if s["metric"] == "test200/ce"]
    assert {(s["model"], s["seeds"]) for s in summary} == {
        ("rim lr_schedule=constant", 2),
        ("rim lr_schedule=cosine", 1),
    }
    assert "| copying | rim lr_schedule=cosine | test200/ce | 1 |" in (tmp_path / "out" / "summary.md").read_text()


def test_metrics_kept_without_a_checkpoint_are_never_overwritten(tmp_path):
    rows = train(_config(), tmp_path, progress=False, log=lambda m: None)
    (tmp_path / "checkpoint.pt").unlink()  # a committed run: its metrics, not its checkpoint
    messages = []
    assert train(_config(), tmp_path, progress=False, log=messages.append) == rows
    assert messages == [f"{tmp_path} is finished (step 6); nothing to do"]
    with pytest.raises(ValueError, match="metrics up to step 6 but no checkpoint.pt to resume from"):
        train(TrainConfig(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None)
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows


def test_a_run_in_use_by_another_process_is_refused(tmp_path):
    from rims_rl.utils import try_lock

    train(_config(), tmp_path, progress=False, log=lambda m: None)
    before = (tmp_path / "metrics.json").read_text()
    with try_lock(tmp_path / training_module.LOCK_FILE) as locked:  # as another process training it would
        assert locked
        with pytest.raises(ValueError, match="in use by another process"):
            train(TrainConfig(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None)
    assert (tmp_path / "metrics.json").read_text() == before
    rows = train(TrainConfig(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None)
    assert [r["step"] for r in rows] == [3, 6, 9]  # free again once the lock is released


def test_status_says_what_training_would_do_and_changes_nothing(tmp_path, capsys):
    """``run_status`` (and ``train_supervised.py --status``, the queue's check): todo before a run and for more
    steps, busy while another process holds the lock, finished once the steps are trained."""
    from rims_rl.utils import try_lock

    run_dir, more = tmp_path / "run", TrainConfig(**{**_config().to_dict(), "steps": 9})
    assert training_module.run_status(_config(), run_dir) == "todo" and not run_dir.exists()
    train(_config(), run_dir, progress=False, log=lambda m: None)
    files = sorted(p.name for p in run_dir.iterdir())
    assert training_module.run_status(_config(), run_dir) == "finished"
    assert training_module.run_status(more, run_dir) == "todo"
    with try_lock(run_dir / training_module.LOCK_FILE) as locked:  # as another process training it would
        assert locked and training_module.run_status(more, run_dir) == "busy"
        assert training_module.run_status(_config(), run_dir) == "finished"
    assert training_module.run_status(more, run_dir) == "todo"  # free again
    assert sorted(p.name for p in run_dir.iterdir()) == files
    script = _script()
    argv = ["--task", "copying", "--run-dir", str(run_dir), "--seed", "1", "--steps", "6", "--batch-size", "4"]
    argv += ["--eval-every", "3", "--status", "--hp"] + [f"core.{k}={v}" for k, v in CORE.items()]
    argv += [f"options.{k}={v}" for k, v in OPTIONS.items()]
    assert script.main(argv) == 0 and capsys.readouterr().out == "finished\n"
    assert sorted(p.name for p in run_dir.iterdir()) == files


def test_report_labels_name_the_effective_core_sizes():
    from rims_rl.tasks.report import _settings

    lstm = _settings({"task": "copying", "model": "lstm", "seed": 0, "core": {"num_units": 4, "hidden_size": 8}})
    assert lstm["core.lstm_hidden_size"] == 32 and "core.hidden_size" not in lstm  # the LSTM's size, not the RIM's
    assert (
        _settings({"task": "copying", "model": "lstm", "core": {"lstm_hidden_size": 600}})["core.lstm_hidden_size"]
        == 600
    )
    rim = _settings({"task": "copying", "model": "rim", "core": {"hidden_size": 100}})
    assert rim["core.hidden_size"] == 100 and rim["core.num_units"] == 6 and "core.lstm_hidden_size" not in rim
    # speed settings never split runs into variants (configs saved before ``compile`` existed lack it)
    assert _settings({"model": "rim", "compile": False, "num_threads": 2}) == _settings({"model": "rim"})


def test_resume_loads_its_checkpoint_weights_only(tmp_path, monkeypatch):
    """A checkpoint the project writes holds tensors and plain values: resuming never unpickles code."""
    train(_config(), tmp_path, progress=False, log=lambda m: None)
    calls, real_load = [], torch.load
    monkeypatch.setattr(
        training_module.torch,
        "load",
        lambda *args, **kwargs: calls.append(kwargs.get("weights_only")) or real_load(*args, **kwargs),
    )
    rows = train(TrainConfig(**{**_config().to_dict(), "steps": 9}), tmp_path, progress=False, log=lambda m: None)
    assert calls == [True] and [r["step"] for r in rows] == [3, 6, 9]


def test_presets_are_yaml_files_checked_like_every_config(tmp_path, monkeypatch):
    from rims_rl.tasks.training import TASKS, load_preset

    for task in TASKS:  # every task has a preset that loads, with the paper's-results sizes
        assert load_preset(task).task == task
    config = load_preset("copying", ["core.hidden_size=100", "options.train_gap=10"], model="lstm", seed=2)
    assert (config.model, config.seed, config.steps, config.lr) == ("lstm", 2, 8000, 1e-3)
    assert (config.core, config.options) == ({"hidden_size": 100}, {"train_gap": 10})
    monkeypatch.setattr(training_module, "PRESETS_DIR", tmp_path)
    (tmp_path / "copying.yaml").write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown train config key\(s\) \['learning_rate'\] in copying.yaml"):
        load_preset("copying")


def test_configs_saved_with_the_old_core_names_resume_and_report(tmp_path):
    from rims_rl.tasks.report import collect
    from rims_rl.tasks.training import upgrade_config

    old = {"task": "copying", "model": "rim", "core": {"unit_size": 8, "rim_cell": "gru", "num_units": 4}}
    assert upgrade_config(old) == {
        "task": "copying",
        "model": "rim",
        "version": 2,
        "core": {"hidden_size": 8, "cell": "gru", "num_units": 4},
    }
    # version 1's hidden_size was the LSTM baseline's size; today's is the RIM's per-mechanism size
    assert upgrade_config({"model": "lstm", "core": {"hidden_size": 600}})["core"] == {"lstm_hidden_size": 600}
    assert upgrade_config(upgrade_config(old)) == upgrade_config(old)  # a version-2 config is left as it is
    assert old["core"] == {"unit_size": 8, "rim_cell": "gru", "num_units": 4}  # not changed in place

    run = tmp_path / "runs" / "copying-rim-s1"
    train(_config(), run, progress=False, log=lambda m: None)
    saved = json.loads((run / "config.json").read_text())
    assert saved["version"] == 2 and saved["core"] == CORE
    del saved["version"]  # as a run saved before the rename wrote it
    saved["core"] = {"num_units": 4, "k_active": 2, "unit_size": 8, "input_value_size": 16}
    (run / "config.json").write_text(json.dumps(saved))
    assert TrainConfig.from_saved(saved) == _config()
    assert collect(tmp_path / "runs")[0]["settings"]["core.hidden_size"] == 8
    rows = train(TrainConfig(**{**_config().to_dict(), "steps": 9}), run, progress=False, log=lambda m: None)
    assert [r["step"] for r in rows] == [3, 6, 9]
    assert json.loads((run / "config.json").read_text())["core"] == CORE  # rewritten in today's names
