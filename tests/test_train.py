import pytest
import torch

from course_lib.train import StopTraining, TrainConfig, lr_at, train
from course_lib.model import build_model

SHORT = dict(steps=12, batch_size=4, seq_len=32, warmup_steps=3, eval_every=6, eval_batches=2)


def fresh(config, seed=0):
    torch.manual_seed(seed)
    return build_model(config)


def test_schedule_warms_up_then_decays_to_floor():
    config = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lr_at(100, config) == pytest.approx(0.1)


def test_seeded_run_reproduces_exactly(corpus, tiny_config):
    a = train(fresh(tiny_config), corpus, TrainConfig(**SHORT), progress=False)
    b = train(fresh(tiny_config), corpus, TrainConfig(**SHORT), progress=False)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.eval_step == [6, 12] and len(a.train_loss) == 12


def test_resume_continues_bit_for_bit(corpus, tiny_config, tmp_path):
    full_model = fresh(tiny_config)
    full = train(full_model, corpus, TrainConfig(**SHORT), progress=False)

    path = tmp_path / "ckpt.safetensors"

    def stop_at_5(info):
        if info.step == 5:
            raise StopTraining

    first_model = fresh(tiny_config)
    train(first_model, corpus, TrainConfig(**SHORT), callbacks=[stop_at_5], checkpoint_path=path, progress=False)
    resumed_model = fresh(tiny_config, seed=99)  # different init: everything must come from the checkpoint
    resumed = train(resumed_model, corpus, TrainConfig(**SHORT), checkpoint_path=path, resume=True, progress=False)
    assert resumed.train_loss == full.train_loss
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_extra_losses_are_added_and_recorded(corpus, tiny_config):
    def logit_penalty(output, batch):
        return {"logit_l2": 1e-3 * output.logits.pow(2).mean()}

    history = train(fresh(tiny_config), corpus, TrainConfig(**SHORT), losses=[logit_penalty], progress=False)
    assert len(history.extra["logit_l2"]) == 12 and history.extra["logit_l2"][-1] > 0
    plain = train(fresh(tiny_config), corpus, TrainConfig(**SHORT), progress=False)
    assert plain.train_loss[0] == history.train_loss[0] and plain.train_loss[-1] != history.train_loss[-1]  # it counted


def test_short_training_beats_the_unigram_baseline(corpus, tiny_config):
    config = TrainConfig(**{**SHORT, "steps": 150, "batch_size": 8, "eval_every": 150, "eval_batches": 6})
    history = train(fresh(tiny_config), corpus, config, progress=False)
    assert history.val_loss[-1] < corpus.unigram_loss() - 0.2


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=-1.0), dict(batch_size=0), dict(grad_clip=-0.5)])
def test_bad_train_config(bad):
    with pytest.raises(ValueError, match="TrainConfig"):
        TrainConfig(**bad)


def test_workshop_scaling_is_a_function_of_the_config(monkeypatch):
    from course_lib.cached_training import experiment_key
    from course_lib.train import workshop_scaled
    from course_lib.transformer import ModelConfig

    full = TrainConfig(steps=700, warmup_steps=30, eval_every=100, record_every=25)
    monkeypatch.setenv("COURSE_WORKSHOP", "1")
    assert TrainConfig(steps=700) == TrainConfig(steps=700) and TrainConfig(steps=700).steps == 700  # no side channel
    short = workshop_scaled(full)
    assert (short.steps, short.warmup_steps, short.eval_every, short.record_every) == (280, 12, 40, 10)
    assert full.steps == 700  # the input is left alone
    assert workshop_scaled(TrainConfig(steps=30)).steps == 20  # never below 20 steps
    assert workshop_scaled(TrainConfig(steps=400), min_steps=400) == TrainConfig(steps=400)  # a run that needs every step
    assert workshop_scaled(full, enabled=False) is full
    assert experiment_key(ModelConfig(), short) != experiment_key(ModelConfig(), full)  # cached apart
    monkeypatch.setenv("COURSE_WORKSHOP", "0")
    assert workshop_scaled(full) is full


def test_cache_key_covers_the_training_code_only(monkeypatch):
    from course_lib import cached_training

    modules = cached_training.training_modules()
    for needed in ("train", "model", "transformer", "moe", "routing", "mtp", "balancing", "config", "checkpoints"):
        assert needed in modules
    for learner_facing in ("labs", "plots", "specialisation", "open_weights", "licenses", "exercises", "experiments"):
        assert learner_facing not in modules
    before = cached_training.training_code_fingerprint()
    source = (cached_training.LIBRARY_DIR / "train.py").read_text()
    edited = {"train.py": source.replace('"""The training loop', '"""An edited docstring. The training loop', 1)
              .replace("# pre-norm", "# an edited comment")}
    real_read_text = type(cached_training.LIBRARY_DIR).read_text

    def read_text(path, *args, **kwargs):
        return edited.get(path.name) if path.name in edited else real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(type(cached_training.LIBRARY_DIR), "read_text", read_text)
    assert cached_training.training_code_fingerprint() == before  # docstrings and comments do not retrain
    edited["train.py"] = source.replace("betas=(0.9, 0.95)", "betas=(0.9, 0.99)")
    assert "betas=(0.9, 0.99)" in edited["train.py"]
    assert cached_training.training_code_fingerprint() != before  # code that changes training does


def test_train_cached_trains_once_then_reuses(corpus, tiny_config, tmp_path, monkeypatch):
    from course_lib.cached_training import cache_dir, train_cached

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    config = TrainConfig(**SHORT)
    model, history, cached = train_cached(tiny_config, config, corpus=corpus, progress=False)
    again, history_again, cached_again = train_cached(tiny_config, config, corpus=corpus, progress=False)
    assert (cached, cached_again) == (False, True)
    assert history_again.train_loss == history.train_loss and history_again.val_loss == history.val_loss
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    # a cache hit honours the device policy exactly as a fresh run does (it used to come back on the CPU silently)
    monkeypatch.setenv("COURSE_DEVICE", "tpu-of-my-dreams")
    with pytest.raises(ValueError, match="Unknown device"):
        train_cached(tiny_config, config, corpus=corpus, progress=False)
    monkeypatch.delenv("COURSE_DEVICE")
    assert train_cached(tiny_config, config, corpus=corpus, progress=False)[2]  # ...and the entry survived it
    # a damaged entry is retrained, not trusted
    (entry,) = cache_dir().glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    retrained, _, cached_after_damage = train_cached(tiny_config, config, corpus=corpus, progress=False)
    assert not cached_after_damage
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), retrained.state_dict().values()))
