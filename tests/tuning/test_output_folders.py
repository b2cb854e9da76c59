"""Output folders (``tuning.outputs``): ``retrain --out`` and ``darts --out`` replace only
files they wrote themselves (in this run or an earlier one, unchanged since); any other
file of their names is kept, and the command refuses before training."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tuning import outputs
from tuning.errors import TuningError
from tuning.outputs import MANIFEST, OutputFolder

NAMES = ("model.npz", "result.json", "model.txt")


def folder(path, command="retrain", overwrite=False):
    return OutputFolder(path, command, NAMES, overwrite=overwrite)


def refusal(path, names, command="retrain"):
    many = len(names) > 1
    return (f"--out {path}: {', '.join(names)} already {'exist' if many else 'exists'} there, "
            f"not left by an earlier `tuning {command}` into this folder (or changed since); "
            f"nothing was replaced. Give --overwrite to replace {'them' if many else 'it'}, "
            f"or another --out folder")


def test_a_fresh_folder_is_written_and_recorded(tmp_path):
    out = folder(tmp_path / "new")
    out.check()                                   # the folder need not exist yet
    path = out.write_text("model.txt", "a model\n")
    assert path == tmp_path / "new" / "model.txt" and path.read_text() == "a model\n"
    manifest = json.loads((tmp_path / "new" / MANIFEST).read_text())
    assert manifest == {"format": 1, "files": {"model.txt": {
        "command": "retrain", "sha256": hashlib.sha256(b"a model\n").hexdigest()}}}
    assert out.written == ["model.txt"]
    assert sorted(os.listdir(tmp_path / "new")) == [MANIFEST, "model.txt"]   # no temp file
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~outputs._umask()


def test_an_earlier_runs_files_are_replaced(tmp_path):
    first = folder(tmp_path)
    first.write_text("model.txt", "first\n")
    first.write("model.npz", lambda p: p.write_bytes(b"weights-1"))
    again = folder(tmp_path)
    again.check()
    again.write_text("model.txt", "second\n")
    assert (tmp_path / "model.txt").read_text() == "second\n"
    assert again.is_ours("model.txt") and again.is_ours("model.npz")


def test_the_users_files_are_never_replaced(tmp_path):
    (tmp_path / "model.txt").write_text("my notes")
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(TuningError) as info:
        folder(tmp_path).check()
    assert str(info.value) == refusal(tmp_path, ["result.json", "model.txt"])
    with pytest.raises(TuningError, match="model.txt appeared there while `tuning retrain` "
                                          "ran and was not replaced"):
        folder(tmp_path).write_text("model.txt", "x")
    assert (tmp_path / "model.txt").read_text() == "my notes"
    assert not (tmp_path / MANIFEST).exists()


def test_a_file_changed_since_or_written_by_another_command_is_not_ours(tmp_path):
    folder(tmp_path).write_text("model.txt", "written\n")
    (tmp_path / "model.txt").write_text("edited by hand\n")
    with pytest.raises(TuningError) as info:
        folder(tmp_path).check()
    assert str(info.value) == refusal(tmp_path, ["model.txt"])
    folder(tmp_path, overwrite=True).write_text("model.txt", "written\n")
    folder(tmp_path).check()                                  # recorded again: ours
    with pytest.raises(TuningError) as info:
        folder(tmp_path, command="darts").check()
    assert str(info.value) == refusal(tmp_path, ["model.txt"], command="darts")


def test_links_fifos_and_a_damaged_manifest_are_not_ours(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "model.txt").symlink_to(target)
    os.mkfifo(out_dir / "result.json")
    with pytest.raises(TuningError) as info:
        folder(out_dir).check()
    assert str(info.value) == refusal(out_dir, ["result.json", "model.txt"])
    # --overwrite replaces the link itself, never writes through it
    folder(out_dir, overwrite=True).write_text("model.txt", "new")
    assert target.read_text() == "keep me" and not (out_dir / "model.txt").is_symlink()
    (out_dir / "result.json").unlink()
    (out_dir / MANIFEST).write_text("not a manifest")
    with pytest.raises(TuningError) as info:
        folder(out_dir).check()
    assert str(info.value) == refusal(out_dir, [MANIFEST, "model.txt"])   # unprovable


@pytest.mark.timeout(30)
def test_a_recorded_name_replaced_by_a_fifo_is_refused_without_reading_it(tmp_path):
    folder(tmp_path).write_text("model.txt", "written\n")
    (tmp_path / "model.txt").unlink()
    os.mkfifo(tmp_path / "model.txt")                  # hashing it would wait forever
    with pytest.raises(TuningError) as info:
        folder(tmp_path).check()
    assert str(info.value) == refusal(tmp_path, ["model.txt"])


def test_overwrite_accepts_any_file(tmp_path):
    (tmp_path / "model.txt").write_text("mine")
    folder(tmp_path, overwrite=True).check()
    folder(tmp_path, overwrite=True).write_text("model.txt", "replaced")
    assert (tmp_path / "model.txt").read_text() == "replaced"


def test_only_the_commands_own_names_are_written(tmp_path):
    with pytest.raises(ValueError, match=r"'notes.txt' is not one of the files"):
        folder(tmp_path).write_text("notes.txt", "x")


# -- the commands ---------------------------------------------------------------------------

TINY_CNN = {"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "dense_size": 32, "batch_size": 32}


def test_retrain_refuses_before_training_and_keeps_the_users_files(cli):
    Path("final").mkdir()
    Path("final/model.txt").write_text("my model notes")
    Path("final/result.json").write_text('{"mine": true}')
    status, out, err = cli("retrain", "--params", '{"hidden_size": 64}', "--space", "lab-mlp",
                           "--out", "final", "--epochs", "1")
    assert status == 1 and out == ""
    assert err == f"tuning retrain: error: {refusal('final', ['result.json', 'model.txt'])}\n"
    assert Path("final/model.txt").read_text() == "my model notes"
    assert Path("final/result.json").read_text() == '{"mine": true}'
    assert sorted(os.listdir("final")) == ["model.txt", "result.json"]


def test_darts_refuses_before_searching(cli):
    Path("search").mkdir()
    Path("search/params.json").write_text('{"mine": 1}')
    status, out, err = cli("darts", "--epochs", "1", "--params", json.dumps(TINY_CNN),
                           "--out", "search")
    assert status == 1 and out == ""
    assert err == (f"tuning darts: error: "
                   f"{refusal('search', ['params.json'], command='darts')}\n")
    assert Path("search/params.json").read_text() == '{"mine": 1}'


@pytest.mark.parametrize("command", ["retrain", "darts"])
def test_help_says_how_to_proceed(command, capsys):
    from tuning.cli import main
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite replace files in --out" in text
    assert "any other file of these names is kept, and the command refuses before" in text
    assert "give --overwrite, or another folder" in text


def test_retrain_and_darts_into_the_same_folder_again(cli, fashion_mnist):
    retrain = ["retrain", "--params", '{"hidden_size": 64}', "--space", "lab-mlp", "--out",
               "final", "--epochs", "1", "--train-size", "300", "--quiet"]
    assert cli(*retrain)[0] == 0
    first = Path("final/model.npz").read_bytes()
    status, _, err = cli(*retrain, "--seed", "5")          # an earlier retrain's files
    assert status == 0, err
    assert Path("final/model.npz").read_bytes() != first
    manifest = json.loads(Path(f"final/{MANIFEST}").read_text())["files"]
    assert sorted(manifest) == sorted(("model.npz", "result.json", "confusion_matrix.png",
                                       "misclassified.png", "model.txt"))
    # the user edits one: kept, until --overwrite
    Path("final/model.txt").write_text("annotated by hand")
    status, _, err = cli(*retrain)
    assert status == 1 and refusal("final", ["model.txt"]) in err
    assert Path("final/model.txt").read_text() == "annotated by hand"
    status, _, err = cli(*retrain, "--overwrite")
    assert status == 0, err
    assert "annotated" not in Path("final/model.txt").read_text()

    darts = ["darts", "--epochs", "1", "--train-size", "64", "--val-size", "64", "--params",
             json.dumps(TINY_CNN), "--out", "final", "--quiet"]
    assert cli(*darts)[0] == 0                 # other names: the retrain's files stay
    status, _, err = cli(*darts, "--seed", "3")
    assert status == 0, err
    assert json.loads(Path("final/darts.json").read_text())["settings"]["seed"] == 3
    assert json.loads(Path("final/result.json").read_text())["space"] == "lab-mlp"


def test_write_test_report_into_a_plain_folder_still_writes(tmp_path):
    """A caller passing a path (not an OutputFolder) gets the files, as before."""
    import numpy as np

    from minidl.data import ArrayDataset
    from tuning.models import build_model
    from tuning.results import write_test_report
    rng = np.random.default_rng(0)
    test = ArrayDataset(rng.standard_normal((20, 1, 28, 28)).astype(np.float32),
                        rng.integers(0, 10, 20))
    (tmp_path / "model.txt").write_text("replaced: the caller asked for a plain folder")
    report = write_test_report(build_model({"model": "lab-mlp", "hidden_size": 8,
                                            "dropout_rate": 0.0}), test, tmp_path, "t")
    assert np.array(report["confusion_matrix"]).sum() == 20
    assert "Linear" in (tmp_path / "model.txt").read_text()
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
