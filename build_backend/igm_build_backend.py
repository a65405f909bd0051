"""PEP 517 build backend of igm_fast: setuptools, with the extension compiled against the torch
that is already installed where igm_fast is being installed (pyproject.toml, issue 11).

Why not simply `build-system.requires = ["torch"]`: igm_fast._C is built on torch's C++ API
(ATen, TORCH_LIBRARY), which has no stable ABI across torch releases (`py_limited_api` only makes
the CPython side version-independent). The library must be compiled against the very torch that
will load it. With pip's default build isolation a torch build requirement is installed afresh
into a throwaway environment: the newest release pip can find, on this kind of machine a
multi-GB CUDA build, whatever torch the user runs (a CPU 2.13, a CUDA 2.11, ...). The extension
then targets the wrong torch, and the CUDA toolchain is chosen for a torch the user does not have.

So torch is not a static build requirement. Every hook first looks for the torch of the
interpreter pip installs for. Under build isolation pip hides that environment's site-packages
from this process (a `sitecustomize` on PYTHONPATH), so a child of the same interpreter, started
without pip's isolation variables, says where `import torch` would come from, and that directory
is appended to sys.path: after the isolated environment's own entries, so the isolated
setuptools / wheel / ninja still win; nothing is downloaded or installed for torch. Without
`--no-build-isolation` and with it the extension is thus built against the same torch.

An environment without any torch gets torch as a dynamic build requirement
(`get_requires_for_build_*`, the runtime dependency's range), i.e. pip's ordinary behaviour:
the best that can be done when there is no torch to build against; installing torch first
(e.g. `pip install torch==2.13.0`) avoids it.
"""
import importlib.util
import json
import os
import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook not wrapped below)

TORCH_REQUIREMENT = "torch>=2.11,<2.15"  # = the runtime dependency in pyproject.toml

# Run by the installing interpreter without pip's isolation: where would `import torch` come from?
_PROBE = r"""
import importlib.util, json, os, re
spec = importlib.util.find_spec("torch")
locs = list(spec.submodule_search_locations or []) if spec is not None else []
if not locs:
    print(json.dumps(None))
else:
    version = "?"
    try:
        text = open(os.path.join(locs[0], "version.py")).read()
        version = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
    except Exception:
        pass
    print(json.dumps({"path": os.path.dirname(os.path.abspath(locs[0])), "version": version}))
"""

_ISOLATION_VARS = ("PYTHONPATH", "PYTHONNOUSERSITE")  # what pip sets for isolation


def installed_torch_location(python=None):
    """{"path": directory holding the torch package, "version": ...} for `python`'s default
    environment (pip's isolation variables removed), or None when it has no torch."""
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATION_VARS}
    try:
        out = subprocess.run([python or sys.executable, "-c", _PROBE], env=env, check=True,
                             capture_output=True, text=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


def _torch_importable():
    return importlib.util.find_spec("torch") is not None


def _use_installed_torch():
    """True when `import torch` works in this process, after adding the installed torch if needed."""
    if _torch_importable():
        return True  # --no-build-isolation, or already added
    found = installed_torch_location()
    if found is None:
        print(f"igm_fast: no torch installed for {sys.executable}; pip will put {TORCH_REQUIREMENT} "
              "into the isolated build environment (install torch first to build against yours)",
              file=sys.stderr)
        return False
    sys.path.append(found["path"])
    importlib.invalidate_caches()
    print(f"igm_fast: building against the installed torch {found['version']} from {found['path']} "
          "(not an isolated copy)", file=sys.stderr)
    return True


def _requires(hook, config_settings):
    if not _use_installed_torch():
        return [TORCH_REQUIREMENT]  # setup.py needs torch; pip installs it, then calls the next hook
    return hook(config_settings)


def get_requires_for_build_wheel(config_settings=None):
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings=None):
    return _requires(_setuptools.get_requires_for_build_editable, config_settings)


def get_requires_for_build_sdist(config_settings=None):
    return _requires(_setuptools.get_requires_for_build_sdist, config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _use_installed_torch()
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _use_installed_torch()
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _use_installed_torch()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _use_installed_torch()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    _use_installed_torch()
    return _setuptools.build_sdist(sdist_directory, config_settings)
