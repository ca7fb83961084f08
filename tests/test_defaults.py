"""Run defaults that follow the machine (budget, threads), --help showing them, --timings,
and the engines' batch norm written over its input."""
import json
import os
import resource

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from niftyport.cli import cli
from niftyport.inference import defaults
from niftyport.inference.defaults import available_memory, default_max_memory, default_threads

GiB = 2**30

MEMINFO = """MemTotal:       24683584 kB
MemFree:        20181892 kB
MemAvailable:   {available} kB
Buffers:          179928 kB
Cached:          3416712 kB
"""


def meminfo(tmp_path, available_kb):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO.format(available=available_kb))
    return path


def test_available_memory_reads_memavailable_in_kib(tmp_path):
    assert available_memory(meminfo(tmp_path, 23797740)) == 23797740 * 1024
    (tmp_path / "old").write_text("MemTotal: 1000 kB\nMemFree: 10 kB\n")  # kernels before 3.14
    assert available_memory(tmp_path / "old") is None
    assert available_memory(tmp_path / "missing") is None


@pytest.mark.parametrize("available_kb, physical, expected", [
    (23797740, 24 * GiB, 8 * GiB),                    # this machine: 3/4 of 22.7 GiB is over the cap
    (8 * 2**20, 16 * GiB, 6 * GiB),                   # 8 GiB free: 3/4 of it
    (5 * 2**20, 16 * GiB, int(3.75 * GiB)),           # 5 GiB free
    (2**20 // 2, 16 * GiB, 1 * GiB),                  # 512 MiB free: the floor
    (30 * 2**20, 2 * GiB, int(1.5 * GiB)),            # never more than 3/4 of the installed memory
])
def test_default_budget_is_three_quarters_of_available_within_bounds(tmp_path, monkeypatch, available_kb,
                                                                       physical, expected):
    path = meminfo(tmp_path, available_kb)
    monkeypatch.setattr(defaults, "available_memory", lambda: available_memory(path))
    monkeypatch.setattr(defaults, "physical_memory", lambda: physical)
    assert default_max_memory() == expected
    # the engines' budget uses it when none is given
    from niftyport.inference.engines import _Budget
    assert _Budget(None, engine="eager").total == expected


def test_default_budget_without_meminfo_uses_installed_memory(monkeypatch):
    monkeypatch.setattr(defaults, "available_memory", lambda: None)
    monkeypatch.setattr(defaults, "physical_memory", lambda: 4 * GiB)
    assert default_max_memory() == 3 * GiB
    monkeypatch.setattr(defaults, "physical_memory", lambda: None)
    assert default_max_memory() == 6 * GiB  # nothing known: the fixed fallback


def test_default_threads_are_the_cores_this_process_may_use(monkeypatch):
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert default_threads() == 3


@pytest.mark.parametrize("command", ["parcellate", "demo"])
def test_help_shows_this_machines_defaults(monkeypatch, command):
    monkeypatch.setattr(defaults, "available_memory", lambda: 10 * GiB)
    monkeypatch.setattr(defaults, "physical_memory", lambda: 16 * GiB)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(3)))
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "[default on this machine: 3, the cores this process may use]" in text
    # 3/4 of 10 GiB = 7.5 GiB
    assert "[default on this machine: 7.5G: 3/4 of the 10G available now, within 1G..8G]" in text


def test_parcellate_uses_default_threads_and_writes_timings(tmp_path, monkeypatch):
    import nibabel as nib

    from niftyport.segmentation import pipeline

    class Threshold(torch.nn.Module):
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), x], dim=1)

    rng = np.random.default_rng(0)
    scan = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(rng.gamma(2.0, 50.0, size=(20, 18, 16)).astype(np.float32), np.eye(4)), scan)
    monkeypatch.setattr("niftyport.weights.load_weights", lambda *a, **k: Threshold())
    monkeypatch.setattr(pipeline, "default_threads", lambda: 1)
    monkeypatch.setattr(defaults, "available_memory", lambda: 4 * GiB)
    monkeypatch.setattr(defaults, "physical_memory", lambda: 16 * GiB)
    threads = torch.get_num_threads()
    rss_before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    result = CliRunner().invoke(cli, ["parcellate", str(scan), "-o", str(tmp_path / "out.nii.gz"), "-q",
                                      "--window", "32", "--device", "cpu", "--timings",
                                      str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["threads"] == 1  # the default, not torch's setting
    assert torch.get_num_threads() == threads  # torch's own setting is restored
    assert set(record["seconds"]) == {"preprocessing", "weights", "network", "restore", "writing", "other"}
    assert sum(record["seconds"].values()) == pytest.approx(record["total_seconds"], abs=1e-6)
    assert all(v >= 0 for v in record["cpu_seconds"].values())
    assert record["max_memory"] == 3 * GiB  # 3/4 of the 4 GiB available
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert rss_before <= record["peak_rss"] <= peak_after
    assert (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_batch_norm_over_its_input_equals_the_module(memory_format):
    from niftyport.inference.engines import _bn_

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm3d(32, eps=1e-5).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(2, 32, 9, 16, 23).contiguous(memory_format=memory_format)
    with torch.inference_mode():
        expected = bn(x)
        y = x.clone(memory_format=memory_format)
        out = _bn_(bn, y)
    assert out.data_ptr() == y.data_ptr()  # written over its input
    assert torch.equal(out, expected)  # bit for bit
    assert not torch.equal(x, expected)


def test_niftynet_mode_keeps_within_max_memory_while_reusing_freed_memory():
    # a fresh process: its peak resident memory (VmHWM) is this run's alone
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent("""
        import numpy as np, torch
        from niftyport.inference.engines import (segment_grid, _rss_bytes, can_reuse_freed_memory,
                                                 grid_jobs, conv_steps)
        from niftyport.network import HighRes3DNet
        torch.manual_seed(0)
        net = HighRes3DNet().eval()
        volume = np.random.default_rng(0).standard_normal((56, 60, 56)).astype(np.float32)
        base = _rss_bytes()
        stats = {}
        labels = segment_grid(net, volume, window=(56, 56, 56), border=(2, 2, 2),
                              max_memory=base + 700 * 2**20, stats=stats)
        peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        untiled = len(grid_jobs(volume.shape, (56, 56, 56), (2, 2, 2), 1, conv_steps(net))[1])
        print(base, peak, stats["regions"], untiled, int(can_reuse_freed_memory()), _rss_bytes())
    """)
    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory is read from /proc (Linux)")
    from niftyport.inference.engines import _MALLOC_ENV

    env = {k: v for k, v in os.environ.items() if k not in _MALLOC_ENV}  # malloc as glibc sets it
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    base, peak, regions, untiled, reused, after = map(int, out.stdout.split())
    assert reused == 1  # glibc here: the freed activations were kept for reuse
    assert regions == untiled  # one network call per window region: the budget did not tile them
    assert int(peak) <= int(base) + 700 * 2**20
    assert after < peak - 100 * 2**20  # and the kept memory was given back afterwards
