import pytest
import torch

from course_lib.train import StopTraining, TrainConfig, lr_at, train
from course_lib.transformer import ModelConfig, Transformer

SHORT = dict(steps=12, batch_size=4, seq_len=32, warmup_steps=3, eval_every=6, eval_batches=2)


def fresh(config, seed=0):
    torch.manual_seed(seed)
    return Transformer(config)


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
    def penalty(model, batch):
        return {"l2": 1e-3 * sum(p.pow(2).sum() for p in model.parameters())}

    history = train(fresh(tiny_config), corpus, TrainConfig(**SHORT), extra_losses=penalty, progress=False)
    assert len(history.extra["l2"]) == 12 and history.extra["l2"][-1] > 0


def test_short_training_beats_the_unigram_baseline(corpus, tiny_config):
    config = TrainConfig(**{**SHORT, "steps": 150, "batch_size": 8, "eval_every": 150, "eval_batches": 6})
    history = train(fresh(tiny_config), corpus, config, progress=False)
    assert history.val_loss[-1] < corpus.unigram_loss() - 0.2


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=-1.0), dict(batch_size=0), dict(grad_clip=-0.5)])
def test_bad_train_config(bad):
    with pytest.raises(ValueError, match="TrainConfig"):
        TrainConfig(**bad)


def test_workshop_mode_shortens_every_run_once(monkeypatch):
    from dataclasses import asdict

    from course_lib.experiments import experiment_key
    from course_lib.transformer import ModelConfig

    full = TrainConfig(steps=700, warmup_steps=30, eval_every=100, record_every=25)
    monkeypatch.setenv("COURSE_WORKSHOP", "1")
    short = TrainConfig(steps=700, warmup_steps=30, eval_every=100, record_every=25)
    assert (short.steps, short.warmup_steps, short.eval_every, short.record_every) == (280, 12, 40, 10)
    assert TrainConfig(**asdict(short)) == short  # rebuilding a scaled config does not shorten it again
    assert TrainConfig(steps=30).steps == 20  # never below 20 steps
    kept = TrainConfig(steps=400, workshop_min_steps=400)  # a run whose point needs every step
    assert kept.steps == 400 and not kept.workshop_scaled
    assert experiment_key(ModelConfig(), short) != experiment_key(ModelConfig(), full)  # cached apart
    monkeypatch.setenv("COURSE_WORKSHOP", "0")
    assert TrainConfig(steps=700) == TrainConfig(steps=700, workshop_scaled=False) and TrainConfig(steps=700).steps == 700
    # the kept run shares its cache entry with the same run outside workshop mode
    assert experiment_key(ModelConfig(), kept) == experiment_key(ModelConfig(), TrainConfig(steps=400))


def test_train_cached_trains_once_then_reuses(corpus, tiny_config, tmp_path, monkeypatch):
    from course_lib.experiments import cache_dir, train_cached

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
