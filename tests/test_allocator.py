"""The long-run allocator setting (neuralgraph.allocator): large tensors stay on glibc's heap, and only the
process entry of the ``neuralgraph`` command changes it, never an import or an in-process ``main``."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuralgraph.allocator import _glibc

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's mallopt is needed (Linux with glibc)")

#: A child that runs ``setup``, then allocates a 96 MiB tensor and prints whether it sits in the heap
#: (the ``[heap]`` mapping grew past it) or in a mapping of its own.
CHILD = textwrap.dedent("""
    import sys, torch
    {setup}
    def big_mappings():
        out = []
        for line in open("/proc/self/maps"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if hi - lo >= 96 << 20:
                out.append(line.split()[-1] if line.split()[-1].startswith("[") else "anon")
        return out
    before = big_mappings()
    t = torch.ones(24 << 20)  # 96 MiB of float32
    after = big_mappings()
    print("heap" if "[heap]" in after and after.count("anon") == before.count("anon") else "mmap", float(t.sum()))
""")


def _where(setup: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("NEURALGRAPH_MALLOC", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], capture_output=True, text=True,
                         env={**clean, **env, "PYTHONPATH": str(REPO)}, check=True, timeout=120)
    where, total = out.stdout.splitlines()[-1].split()
    assert float(total) == 24 << 20
    return where


KEEP = "from neuralgraph.allocator import keep_freed_memory; print('changed', keep_freed_memory(), file=sys.stderr)"


def test_default_allocator_maps_large_tensors():
    assert _where("import neuralgraph") == "mmap"


def test_keep_freed_memory_puts_large_tensors_on_the_heap():
    assert _where(KEEP) == "heap"


@pytest.mark.parametrize("env", [{"NEURALGRAPH_MALLOC": "system"}, {"MALLOC_ARENA_MAX": "2"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_the_environment_can_keep_the_system_allocator(env):
    assert _where(KEEP, **env) == "mmap"


def test_only_the_command_entry_changes_the_allocator():
    assert _where("from neuralgraph.cli import main; main(['models'])") == "mmap"
    assert _where("import neuralgraph.cli as c; c.main = lambda: 0; c.entry()") == "heap"
