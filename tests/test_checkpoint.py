"""Checkpoint files: atomic, verified, never unpickled."""
import json
import pickle

import pytest
import torch

from negaug.experiment import checkpoint as ckpt


def _tensors(value=1.0):
    return {"generator": {"w": torch.full((3, 2), value)}, "rng": {"latent": torch.Generator().manual_seed(1).get_state()}}


def test_round_trip_is_exact(tmp_path):
    state = _tensors(2.5)
    ckpt.save(tmp_path, 12, state, {"config": {"a": 1}})
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.step == 12 and loaded.record["config"] == {"a": 1}
    assert torch.equal(loaded.state["generator"]["w"], state["generator"]["w"])
    assert torch.equal(loaded.state["rng"]["latent"], state["rng"]["latent"])


def test_nested_state_keeps_int_keys_tuples_and_plain_values(tmp_path):
    """An optimizer's state dict has int keys and tuples (betas): both come back as they were."""
    state = {"opt": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(3.0)}},
                     "param_groups": [{"lr": 0.1, "betas": (0.0, 0.99), "params": [0]}]},
             "step": 7, "best": None, "name": "x", "flags": [True, 1.5]}
    ckpt.save(tmp_path, 7, state, {})
    loaded = ckpt.load_latest(tmp_path).state
    assert list(loaded["opt"]["state"]) == [0] and loaded["opt"]["param_groups"][0]["betas"] == (0.0, 0.99)
    assert torch.equal(loaded["opt"]["state"][0]["exp_avg"], torch.arange(3.0))
    assert {k: loaded[k] for k in ("step", "best", "name", "flags")} == {"step": 7, "best": None, "name": "x",
                                                                         "flags": [True, 1.5]}
    tensor_names = set(json.loads((tmp_path / "step_0000007.json").read_text())["state"]["opt"]["state"]
                       ["__items__"][0][1].values().__iter__().__next__().values())
    assert tensor_names == {"opt.state.0.step"}  # tensors are named by their path


def test_unsavable_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save object at 'x.y'"):
        ckpt.save(tmp_path, 1, {"x": {"y": object()}}, {})
    assert ckpt.list_steps(tmp_path) == []


def test_latest_and_prune(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save(tmp_path, step, _tensors(step), {})
    assert ckpt.list_steps(tmp_path) == [1, 2, 3, 4]
    ckpt.prune(tmp_path, keep=2, protect={1})
    assert ckpt.list_steps(tmp_path) == [1, 3, 4]
    assert ckpt.load_latest(tmp_path).step == 4


def test_prune_removes_tensor_files_orphaned_by_a_kill_during_an_earlier_prune(tmp_path):
    """Regression (red team): kill -9 between unlinking a pruned checkpoint's record and its tensors
    left step_0000003.safetensors forever; the next prune removes it, never a newer or protected one."""
    for step in (1, 2, 3, 4, 5):
        ckpt.save(tmp_path, step, _tensors(step), {})
    (tmp_path / "step_0000003.json").unlink()  # what the kill left: tensors without their record
    (tmp_path / "step_0000002.json").unlink()  # a protected step's orphan stays
    (tmp_path / "step_0000009.safetensors").write_bytes(b"newer than every record: a save in progress")
    ckpt.prune(tmp_path, keep=2, protect={2})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step_0000002.safetensors", "step_0000004.json", "step_0000004.safetensors",
                     "step_0000005.json", "step_0000005.safetensors", "step_0000009.safetensors"]


def test_truncated_checkpoint_falls_back_and_is_named(tmp_path):
    ckpt.save(tmp_path, 1, _tensors(1.0), {})
    ckpt.save(tmp_path, 2, _tensors(2.0), {})
    bad = tmp_path / "step_0000002.safetensors"
    bad.write_bytes(bad.read_bytes()[:-7])
    messages = []
    loaded = ckpt.load_latest(tmp_path, warn=messages.append)
    assert loaded.step == 1 and torch.equal(loaded.state["generator"]["w"], torch.full((3, 2), 1.0))
    assert len(messages) == 1 and "step_0000002.safetensors" in messages[0] and "truncated or corrupted" in messages[0]
    with pytest.raises(ckpt.CheckpointError, match="step_0000002"):
        ckpt.load_file(tmp_path / "step_0000002.json")


def test_corrupted_json_record_is_reported(tmp_path):
    ckpt.save(tmp_path, 5, _tensors(), {})
    (tmp_path / "step_0000005.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match=r"step_0000005.json is corrupted"):
        ckpt.load_file(tmp_path / "step_0000005.json")
    assert ckpt.load_latest(tmp_path, warn=lambda m: None) is None


class _Payload:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_code_payload_is_refused_without_running(tmp_path):
    ckpt.save(tmp_path, 3, _tensors(), {})
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    blob = pickle.dumps(payload)
    tensor_file = tmp_path / "step_0000003.safetensors"
    tensor_file.write_bytes(blob)
    record = json.loads((tmp_path / "step_0000003.json").read_text())
    import hashlib
    record.update(tensor_bytes=len(blob), tensor_sha256=hashlib.sha256(blob).hexdigest())  # a forged record
    record["record_sha256"] = ckpt._record_hash(record)  # by a forger who knows the scheme
    (tmp_path / "step_0000003.json").write_text(json.dumps(record))
    with pytest.raises(ckpt.CheckpointError, match="not a safetensors file"):
        ckpt.load_file(tmp_path / "step_0000003.json")
    assert not marker.exists()


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save(tmp_path, 1, _tensors(1.0), {})
    real_write = ckpt._write_atomic

    def full_disk(path, data):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_atomic", full_disk)
    with pytest.raises(OSError):
        ckpt.save(tmp_path, 2, _tensors(2.0), {})
    monkeypatch.undo()
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.step == 1  # step 2 has no record, so it is not a checkpoint


def test_adam_state_round_trip_continues_identically(tmp_path):
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=0.1, betas=(0.0, 0.99))
    param.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    ckpt.save(tmp_path, 1, {"opt": opt.state_dict(), "param": param.detach()}, {})
    loaded = ckpt.load_latest(tmp_path).state
    other_param = torch.nn.Parameter(loaded["param"].clone())
    other = torch.optim.Adam([other_param], lr=0.5)
    other.load_state_dict(loaded["opt"])
    assert other.param_groups[0]["lr"] == 0.1 and other.param_groups[0]["betas"] == (0.0, 0.99)
    for p, o in ((param, opt), (other_param, other)):
        p.grad = torch.tensor([0.5, 0.5, -1.0])
        o.step()
    assert torch.equal(param, other_param)


def test_format_1_checkpoints_are_still_read(tmp_path):
    """Checkpoints of negaug <= 0.1.0 (flat tensor names, optimizer scalars in the JSON) load as a state dict."""
    import hashlib

    from safetensors.torch import save as save_bytes

    tensors = {"G.w": torch.ones(2), "D.w": torch.zeros(2), "EMA.w": torch.full((2,), 0.5),
               "opt_g.state.0.exp_avg": torch.arange(2.0), "opt_g.state.0.step": torch.tensor(4.0),
               "opt_d.state.0.exp_avg": torch.arange(2.0), "opt_d.state.0.step": torch.tensor(4.0),
               "rng.latent": torch.Generator().get_state(), "rng.nda": torch.Generator().get_state(),
               "rng.torch": torch.get_rng_state()}
    blob = save_bytes(tensors)
    groups = [{"lr": 0.1, "betas": [0.0, 0.99], "params": [0]}]
    record = {"step": 9, "format_version": 1, "tensor_file": "step_0000009.safetensors", "tensor_bytes": len(blob),
              "tensor_sha256": hashlib.sha256(blob).hexdigest(), "config": {}, "stream": {"epoch": 1, "position": 64},
              "best": None, "ema_extra": {"__nested__": []},
              "opt_g": {"param_groups": groups, "scalars": {}}, "opt_d": {"param_groups": groups, "scalars": {}}}
    (tmp_path / "step_0000009.safetensors").write_bytes(blob)
    (tmp_path / "step_0000009.json").write_text(json.dumps(record))
    state = ckpt.load_latest(tmp_path).state
    assert state["step"] == 9 and state["batches"] == {"epoch": 1, "position": 64}
    assert torch.equal(state["generator"]["w"], torch.ones(2)) and torch.equal(state["ema"]["w"], torch.full((2,), 0.5))
    assert torch.equal(state["opt_g"]["state"][0]["exp_avg"], torch.arange(2.0))
    assert set(state["rng"]) == {"latent", "nda", "torch"} and "scaler" not in state


def test_unknown_format_an_altered_record_and_a_state_of_another_step_are_refused_by_name(tmp_path):
    ckpt.save(tmp_path, 3, {"step": 3, "w": torch.ones(2)}, {"lr": 0.0002})
    path = tmp_path / "step_0000003.json"
    record = json.loads(path.read_text())

    def rewrite(**changes):
        changed = dict(record, **changes)
        changed["record_sha256"] = ckpt._record_hash(changed)
        path.write_text(json.dumps(changed))

    rewrite(format_version=99)
    with pytest.raises(ckpt.CheckpointError, match=r"step_0000003.json has format 99, which this negaug cannot read"):
        ckpt.load_file(path)
    path.write_text(json.dumps(dict(record, lr=0.0102)))  # one flipped bit, hash not updated
    with pytest.raises(ckpt.CheckpointError, match=r"step_0000003.json was altered after it was written"):
        ckpt.load_file(path)
    rewrite(tensor_file="../../elsewhere.safetensors")
    with pytest.raises(ckpt.CheckpointError, match=r"names another tensor file than its own"):
        ckpt.load_file(path)
    rewrite(state=dict(record["state"], step=4))
    with pytest.raises(ckpt.CheckpointError, match=r"step_0000003.json does not describe its tensors"):
        ckpt.load_file(path)


def test_killed_writes_leave_no_temporary_files_behind(tmp_path):
    ckpt.save(tmp_path, 1, _tensors(1.0), {})
    (tmp_path / ".step_0000002.safetensors.tmp-12345").write_bytes(b"x" * 100)  # a writer killed mid-write
    ckpt.save(tmp_path, 2, _tensors(2.0), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_0000001.json", "step_0000001.safetensors", "step_0000002.json", "step_0000002.safetensors"]


def test_a_state_the_caller_cannot_use_falls_back_to_the_previous_checkpoint(tmp_path):
    ckpt.save(tmp_path, 1, {"step": 1, "w": torch.ones(2)}, {})
    ckpt.save(tmp_path, 2, {"step": 2, "v": torch.ones(2)}, {})
    messages, taken = [], []
    found = ckpt.load_latest(tmp_path, warn=messages.append, accept=lambda c: taken.append(c.state["w"]))
    assert found.step == 1 and len(taken) == 1
    assert len(messages) == 1 and "step_0000002.json does not fit this run (KeyError" in messages[0]
