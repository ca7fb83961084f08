"""One convention for every command: one-line errors (usage mistakes too), --debug, --force, choices in --help."""
import numpy as np
import pytest
import torch

from conftest import one_line_error
from niftyport.cli import cli, main


@pytest.mark.parametrize("argv, fragment", [
    (["parcellate"], "give an IMAGE"),
    (["convert"], "Missing argument"),
    (["parcellate", "x.nii.gz", "--mode", "bogus"], "'bogus' is not one of"),
    (["parcellate", "x.nii.gz", "--device", "gpu"], "'gpu' is not one of auto, cpu, cuda, cuda:N"),
    (["nonsense"], "No such command"),
    (["volumes", "--no-such-option"], "No such option"),
])
def test_usage_errors_are_one_line(capsys, argv, fragment):
    status = main(argv)
    line = one_line_error(status, capsys.readouterr().err, fragment)
    assert "--help" in line and "Usage:" not in line


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.nii.gz"
    assert main(["volumes", str(missing)]) == 2
    with pytest.raises(Exception) as info:
        main(["--debug", "volumes", str(missing)])
    assert str(missing) in str(info.value)


def test_mode_and_device_list_their_choices_in_help(capsys):
    assert main(["parcellate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for choice in ("niftynet", "niftynet-fast", "full", "full-eager", "full-winograd"):
        assert choice in text
    assert "[auto|cpu|cuda|cuda:N]" in text


def _writing_commands():
    """Every command with an option or argument naming an output."""
    names = []
    for name, command in cli.commands.items():
        params = {p.name for p in command.params}
        if params & {"output", "output_dir", "json_path", "csv_path"}:
            names.append(name)
    return sorted(names)


def test_every_command_that_writes_has_force():
    commands = _writing_commands()
    assert {"parcellate", "demo", "convert", "export", "volumes", "compare", "report"} <= set(commands)
    for name in commands:
        assert "force" in {p.name for p in cli.commands[name].params}, name


def test_volumes_refuses_to_overwrite_without_force(tmp_path, capsys):
    import nibabel as nib

    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(8, dtype=np.int32).reshape(2, 2, 2), np.eye(4)), labels)
    out = tmp_path / "volumes.csv"
    out.write_text("keep me")
    one_line_error(main(["volumes", str(labels), "-o", str(out)]), capsys.readouterr().err, str(out), "--force")
    assert out.read_text() == "keep me"
    assert main(["volumes", str(labels), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("id,name")


def test_run_parcellation_restores_torch_threads(tmp_path):
    import nibabel as nib

    from niftyport.networks.highres3dnet.module import HighRes3DNet
    from niftyport.segmentation.pipeline import resolve_config, run_parcellation

    rng = np.random.default_rng(0)
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(rng.uniform(0, 100, (10, 10, 10)).astype(np.float32), np.eye(4)), path)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    run_parcellation(path, config=resolve_config(None, window=24), model=HighRes3DNet(num_classes=160),
                     threads=other, device="cpu", progress=False)
    assert torch.get_num_threads() == before
