"""`heads` on bad input: every command turns a config check into one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from heads.cli import COMMANDS, USAGE_ERROR, main

# One bad option value per command, each caught by that command's config check (ConfigError) before any work.
BAD_VALUES: dict[str, list[str]] = {
    "prepare": ["SRC", "DST", "--workers", "0"],
    "prepare --merge": ["OUT", "OUT"],
    "prepare --to-shards": ["PREPARED", "OUT", "--clips-per-shard", "0"],
    "bench prepare": ["SRC", "--clips", "0"],
    "train": ["--k", "0"],
    "train-mouth": ["--data", "d", "--steps", "0"],
    "bench train": ["--steps", "0"],
    "bench loader": ["--prepared", "p", "--batches", "0"],
    "bench soak": ["--clients", "0"],
    "finetune": ["--model", "m", "--images", "a.jpg", "--shots", "40"],
    "evaluate": ["--model", "m", "--data", "d", "--holdout", "0"],
    "evaluate-cross": ["--data", "d", "--frames", "2"],
    "bench finetune": ["--tune.batch", "0"],
    "export": ["--model", "m", "--out", "o", "--tolerance", "0"],
    "bench infer": ["--resolutions", "100"],
    "animate": ["--driving", "d.mp4", "--source", "a.jpg", "--smoothing", "2"],
    "edit": ["--source", "a.jpg", "--yaw", "90"],
    "bench animate": ["--frames", "1"],
    "bench warp": ["--frames", "0"],
    "bench live": ["--seconds", "0"],
    "bench live-browser": ["--phase", "0.1"],
    "bench watermark": ["SRC", "--clips", "0"],
    "verify": ["FILE", "--max-frames", "0"],
    "space": ["OUT", "--title", ""],
    "convert-weights": ["--source", "vgg.pth", "--format", "vgg19-caffe", "--out", "vgg.pth"],
}


def test_every_command_has_a_bad_value_case():
    assert set(BAD_VALUES) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_option_value_is_one_line_and_exit_2(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*name.split(), *BAD_VALUES[name]])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == USAGE_ERROR == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"heads {name}: error: "), err
    assert "Traceback" not in err


def test_unknown_preset_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--preset", "huge"])
    assert exit_.value.code == 2 and "unknown preset 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err


def test_a_named_model_that_is_missing_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """`heads animate --weights DIR` (or $HEADS_WEIGHTS) naming nothing stops with one line, never renders with the
    warp in its place; and it stops before any other work (the photo and clip here do not exist either)."""
    monkeypatch.delenv("HEADS_WEIGHTS", raising=False)
    for args, env in ((["--weights", str(tmp_path / "nonexistent")], None), ([], str(tmp_path / "elsewhere"))):
        if env is not None:
            monkeypatch.setenv("HEADS_WEIGHTS", env)
        with pytest.raises(SystemExit) as exit_:
            main(["animate", "--driving", "d.mp4", "--source", "a.jpg", *args])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == USAGE_ERROR
        assert len(err.splitlines()) == 1 and err.startswith("heads animate: error: weights not found"), err
