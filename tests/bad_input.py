"""What every bad-input test checks: exit status 2, one line ``niftyport: error: <file>: <problem>``,
no traceback, no output written, the inputs byte for byte as they were."""
from __future__ import annotations

import pickle
from pathlib import Path

from niftyport.cli import main


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(capsys, args, *, names: Path | str | None, inputs: Path, outputs: Path,
                   problem: str = "") -> str:
    """Run ``niftyport ARGS`` and check it refuses its input as the CLI must; returns the message.

    ``names``: the file the message must start with (None for an option,
    which is no file); ``inputs``: the folder of the inputs (unchanged
    afterwards); ``outputs``: the folder the command was told to write into
    (left empty, or never created).
    """
    before = snapshot(inputs)
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 2, (args, status, out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = "niftyport: error: " + (f"{names}: " if names is not None else "")
    assert lines[0].startswith(prefix), (prefix, lines[0])
    assert problem in lines[0], (problem, lines[0])
    assert snapshot(inputs) == before, "an input was changed"
    assert not outputs.exists() or not any(outputs.iterdir()), sorted(outputs.rglob("*"))
    return lines[0][len(prefix):]


class CreatesAFile:
    """A pickle payload that would create ``path`` if it were ever unpickled by plain pickle."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def pickle_payload(path: Path, marker: Path) -> Path:
    """A ``.pth`` that runs code when loaded without ``weights_only`` (creating ``marker``), as torch saves it."""
    import torch

    torch.save({"conv_0.conv.weight": torch.zeros(1), "payload": CreatesAFile(marker)}, path)
    return path


def plain_pickle_payload(path: Path, marker: Path) -> Path:
    """The same payload as a bare pickle (no zip container)."""
    path.write_bytes(pickle.dumps({"payload": CreatesAFile(marker)}, protocol=2))
    return path
