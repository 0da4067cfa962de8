"""Checkpoint files: atomic, verified, never unpickled."""
import json
import pickle

import pytest
import torch

from negaug.train import checkpoint as ckpt


def _tensors(value=1.0):
    return {"G.w": torch.full((3, 2), value), "rng.latent": torch.Generator().manual_seed(1).get_state()}


def test_round_trip_is_exact(tmp_path):
    tensors = _tensors(2.5)
    ckpt.save(tmp_path, 12, tensors, {"config": {"a": 1}})
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.step == 12 and loaded.meta["config"] == {"a": 1}
    for key, value in tensors.items():
        assert torch.equal(loaded.tensors[key], value)


def test_latest_and_prune(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save(tmp_path, step, _tensors(step), {})
    assert ckpt.list_steps(tmp_path) == [1, 2, 3, 4]
    ckpt.prune(tmp_path, keep=2, protect={1})
    assert ckpt.list_steps(tmp_path) == [1, 3, 4]
    assert ckpt.load_latest(tmp_path).step == 4


def test_truncated_checkpoint_falls_back_and_is_named(tmp_path):
    ckpt.save(tmp_path, 1, _tensors(1.0), {})
    ckpt.save(tmp_path, 2, _tensors(2.0), {})
    bad = tmp_path / "step_0000002.safetensors"
    bad.write_bytes(bad.read_bytes()[:-7])
    messages = []
    loaded = ckpt.load_latest(tmp_path, warn=messages.append)
    assert loaded.step == 1 and torch.equal(loaded.tensors["G.w"], torch.full((3, 2), 1.0))
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


def test_optimizer_state_round_trip():
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=0.1, betas=(0.0, 0.99))
    param.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    tensors, meta = ckpt.optimizer_to_flat("opt", opt)
    meta = json.loads(json.dumps(meta))
    other = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    other.load_state_dict(ckpt.optimizer_from_flat("opt", tensors, meta))
    assert other.param_groups[0]["lr"] == 0.1 and other.param_groups[0]["betas"] == [0.0, 0.99]
    assert torch.equal(other.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
