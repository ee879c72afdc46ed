import pytest
import torch
from safetensors.torch import save_file

from dynarl.checkpoint import load_checkpoint, save_checkpoint
from dynarl.errors import CheckpointError


def _state():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    return {"w": torch.arange(6.0).reshape(2, 3), "opt": opt.state_dict(), "n": 5, "rng": {"state": 2**100 + 7, "name": "PCG64"}, "t": (1, 2.5), "none": None, "b": torch.tensor([True, False])}


def test_round_trip(tmp_path):
    path = tmp_path / "c.safetensors"
    state = _state()
    save_checkpoint(path, "sac", state)
    algo, loaded = load_checkpoint(path, "sac")
    assert algo == "sac" and loaded["n"] == 5 and loaded["rng"]["state"] == 2**100 + 7 and loaded["t"] == (1, 2.5) and loaded["none"] is None
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert torch.equal(loaded["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    opt.load_state_dict(loaded["opt"])  # optimiser state restores from the JSON + tensor split


def test_truncated_corrupt_foreign_and_other_algo(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, "sac", _state())
    data = path.read_bytes()

    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.safetensors")

    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "flip.safetensors")

    (tmp_path / "text.safetensors").write_bytes(b"hello, I am not a checkpoint")
    with pytest.raises(CheckpointError, match="not a dynarl checkpoint"):
        load_checkpoint(tmp_path / "text.safetensors")

    save_file({"x": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a dynarl checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")

    torch.save({"x": 1}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "pickle.pt")

    with pytest.raises(CheckpointError, match="is a SAC checkpoint, not TD3"):
        load_checkpoint(path, "td3")

    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_damaged_newer_checkpoint_never_pushes_out_the_good_one_a_run_resumed_from(tmp_path, capsys):
    """keep=2, checkpoints at 300 (good) and 500 (truncated): the run resumes from 300, and its next checkpoint
    (600) keeps 300 beside it instead of the damaged 500, so two usable checkpoints remain."""
    from dynarl.run.rundir import RunDir

    run = RunDir(tmp_path)
    run.checkpoint_dir.mkdir()
    for step in (300, 500):
        run.save_checkpoint(step, "sac", _state(), keep=2)
    damaged = run.checkpoint_dir / "step_000000500.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    path, _, _ = run.load_latest("sac")
    assert path.name == "step_000000300.safetensors" and "dynarl: warning:" in capsys.readouterr().err
    run.save_checkpoint(600, "sac", _state(), keep=2)
    assert [s for s, _ in run.checkpoints()] == [300, 500, 600]  # the damaged file stays for inspection, uncounted
    run.save_checkpoint(700, "sac", _state(), keep=2)
    assert [s for s, _ in run.checkpoints()] == [500, 600, 700]
    assert RunDir(tmp_path).load_latest("sac")[0].name == "step_000000700.safetensors"
