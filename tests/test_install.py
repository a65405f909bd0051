"""Installing igm_fast as the README says (issue 11).

`pip install .` and `pip install -e .`, with pip's default build isolation, must compile
igm_fast._C against the torch already installed (not a torch pip downloads into the isolated
build environment), and the result must load and run under that torch. The slow tests build the
project into throwaway venvs that see this interpreter's torch (and the other dependencies)
through a .pth file, so nothing is downloaded but the small build requirements (setuptools,
wheel, ninja) and this environment is never modified. The fast tests pin the build decisions of
setup.py (CUDA or not, the arch list without a GPU) and of the build backend.
"""
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# What a build needs; copied so the build writes nothing into the checkout (build/, *.egg-info, _C.so).
SOURCES = ["setup.py", "pyproject.toml", "build_backend", "csrc", "igm_fast", "kernels"]
HOST_TORCH_SITE = Path(torch.__file__).resolve().parent.parent
PIP_TIMEOUT_S = 1800  # a CUDA torch with nvcc compiles the .cu kernels too

# Loads the installed package from outside the source tree and checks where everything came from
# and that the augmentation op computes what it should.
CHECK_SCRIPT = r"""
import json, sys
import torch, torch.nn.functional as F
import igm_fast, igm_fast._C
from igm_fast import augment as A

torch.manual_seed(0)
x = torch.randn(3, 3, 50, 5, 2)
# Eval, ratio 1.0: full-length crop of each sample's valid frames, no rotation, resized to 40 frames.
p = A.sample_params(torch.tensor([50, 30, 17]), train=False, p_interval=(1.0,))
y = A.apply(x, p, out_frames=40)
err = 0.0
for i in range(3):
    s, n = int(p.start[i]), int(p.length[i])
    seg = x[i, :, s:s + n].permute(0, 2, 3, 1).reshape(-1, 1, n)  # (C*V*M, 1, n)
    ref = F.interpolate(seg, size=40, mode="linear", align_corners=False).reshape(3, 5, 2, 40).permute(0, 3, 1, 2)
    err = max(err, float((y[i] - ref).abs().max()))
# Train: random crops and rotations; a rotation keeps every joint's distance from the origin.
pt = A.sample_params(torch.tensor([50, 30, 17]), train=True, theta=0.3, seed=1, min_crop=8)
yt = A.apply(x, pt, out_frames=40)
unrotated = A.apply(x, A.AugParams(pt.start, pt.length, torch.zeros_like(pt.angles)), out_frames=40)
print(json.dumps({
    "torch_file": torch.__file__, "torch_version": torch.__version__,
    "igm_fast_file": igm_fast.__file__, "ext_file": igm_fast._C.__file__,
    "ops": sorted(n for n in dir(torch.ops.igm_fast) if n.startswith("augment_")),
    "eval_max_err": err, "shape": list(y.shape),
    "train_lengths": pt.length.tolist(), "rotated": bool((yt - unrotated).abs().max() > 1e-3),
    "norm_err": float((yt.norm(dim=1) - unrotated.norm(dim=1)).abs().max()),
}))
"""


def _mkdir(path):
    path.mkdir(parents=True)
    return path


def _copy_sources(dst):
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "build", "*.egg-info")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    return dst


def _run(cmd, *, cwd, timeout=600, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _build_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("MAX_JOBS", "2")
    return env


def _venv(path, *, with_pip, see_host_torch):
    """A throwaway venv of this Python; with see_host_torch its site-packages has a .pth line
    naming the directory this interpreter's torch lives in (torch and every other dependency
    then come from there: what `--system-site-packages` does for a system-wide torch)."""
    r = _run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path], cwd=path.parent)
    assert r.returncode == 0, r.stderr
    python = path / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=path.parent).stdout.strip())
    if see_host_torch:
        (purelib / "_igm_test_host_torch.pth").write_text(f"{HOST_TORCH_SITE}\n")
    return python, purelib


def _pip_install(python, args, cwd):
    r = _run([python, "-m", "pip", "install", "-v", *args], cwd=cwd, timeout=PIP_TIMEOUT_S, env=_build_env())
    log = r.stdout + r.stderr
    if r.returncode != 0 and re.search(r"No matching distribution found for (setuptools|wheel|ninja)", log):
        pytest.skip("pip could not get the build requirements (setuptools, wheel, ninja): no package index "
                    "reachable, so pip's isolated build environment cannot be set up here")
    assert r.returncode == 0, f"pip install {' '.join(args)} failed:\n{log[-6000:]}"
    return log


def _check_installed(python, cwd):
    r = _run([python, "-c", CHECK_SCRIPT], cwd=cwd, env=_build_env())
    assert r.returncode == 0, f"the installed igm_fast does not load or run:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _assert_built_against_host_torch(log):
    # The backend said which torch it used: this interpreter's, from where it is installed...
    assert f"building against the installed torch {torch.__version__} from {HOST_TORCH_SITE}" in log, log[-4000:]
    assert f"igm_fast setup: torch {torch.__version__} from {HOST_TORCH_SITE / 'torch'}" in log, log[-4000:]
    # ...and pip put no torch into the isolated build environment.
    assert not re.search(r"^\s*(Collecting|Downloading|Processing|Using cached)\s+(\S*/)?torch\b", log, re.M), log[-4000:]


def _assert_runs_under_host_torch(res):
    assert Path(res["torch_file"]).resolve().parent.parent == HOST_TORCH_SITE
    assert res["torch_version"] == torch.__version__
    assert res["ops"] == ["augment_apply", "augment_sample_params"]
    assert res["shape"] == [3, 3, 40, 5, 2]
    assert res["eval_max_err"] < 1e-5  # crop + resize = F.interpolate(linear, align_corners=False)
    assert all(8 <= n <= t for n, t in zip(res["train_lengths"], [50, 30, 17]))
    assert res["rotated"] and res["norm_err"] < 1e-4


@pytest.mark.slow
def test_pip_install_dot_builds_against_the_installed_torch(tmp_path):
    """Plain `pip install .` in a fresh venv (its own ensurepip pip), build isolation on."""
    src = _copy_sources(_mkdir(tmp_path / "src"))
    python, purelib = _venv(tmp_path / "venv", with_pip=True, see_host_torch=True)
    log = _pip_install(python, [src], cwd=tmp_path)
    _assert_built_against_host_torch(log)
    res = _check_installed(python, cwd=tmp_path)
    assert Path(res["ext_file"]).parent == purelib / "igm_fast"  # the installed copy, not the sources
    _assert_runs_under_host_torch(res)


@pytest.mark.slow
def test_pip_install_editable_builds_against_the_installed_torch(tmp_path):
    """`pip install -e .` with this environment's (current) pip, build isolation on."""
    # (Asked in a child: find_spec("pip") here would make setuptools' distutils shim step aside.)
    if _run([sys.executable, "-c", "import pip"], cwd=tmp_path).returncode != 0:
        pytest.skip(f"no pip in {sys.executable}'s environment to run the editable install with")
    src = _copy_sources(_mkdir(tmp_path / "src"))
    # --without-pip: `python -m pip` is then this environment's pip, seen through the .pth file.
    python, _ = _venv(tmp_path / "venv", with_pip=False, see_host_torch=True)
    log = _pip_install(python, ["-e", src], cwd=tmp_path)
    _assert_built_against_host_torch(log)
    res = _check_installed(python, cwd=tmp_path)
    assert Path(res["igm_fast_file"]).parent == src / "igm_fast"  # editable: the package is the sources
    assert Path(res["ext_file"]).parent == src / "igm_fast"
    _assert_runs_under_host_torch(res)


# ---- fast: the decisions behind the build ----

@pytest.fixture(scope="module")
def setup_py():
    """setup.py's helpers, loaded without running setup() (it only does under __main__)."""
    return runpy.run_path(str(REPO / "setup.py"), run_name="igm_fast_setup_under_test")


@pytest.fixture(scope="module")
def backend():
    spec = importlib.util.spec_from_file_location("igm_build_backend_under_test",
                                                  REPO / "build_backend" / "igm_build_backend.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cuda_arch_list_defaults_when_no_gpu_is_visible(setup_py, monkeypatch):
    from torch.utils import cpp_extension

    env = {}
    msg = setup_py["default_cuda_arch_list"](env, gpu_visible=False)
    assert env["TORCH_CUDA_ARCH_LIST"] == setup_py["DEFAULT_CUDA_ARCH_LIST"] == "8.0;9.0+PTX"
    assert "TORCH_CUDA_ARCH_LIST" in msg and "no GPU visible" in msg
    # torch turns the default into real nvcc flags (without it and without a GPU torch raised IndexError).
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", env["TORCH_CUDA_ARCH_LIST"])
    flags = cpp_extension._get_cuda_arch_flags()
    for f in ("arch=compute_80,code=sm_80", "arch=compute_90,code=sm_90", "arch=compute_90,code=compute_90"):
        assert any(f in flag for flag in flags), flags
    # A list the user set, or visible GPUs (torch then targets them), are left alone.
    env = {"TORCH_CUDA_ARCH_LIST": "8.6"}
    assert setup_py["default_cuda_arch_list"](env, gpu_visible=False) is None and env["TORCH_CUDA_ARCH_LIST"] == "8.6"
    env = {}
    assert setup_py["default_cuda_arch_list"](env, gpu_visible=True) is None and "TORCH_CUDA_ARCH_LIST" not in env


def test_cuda_build_plan(setup_py):
    plan = setup_py["cuda_build_plan"]
    assert plan("13.0", "/usr/local/cuda", (13, 0))[0]
    assert plan("13.0", "/usr/local/cuda", (13, 2))[0]  # minor versions may differ (torch only warns)
    assert plan("13.0", "/usr/local/cuda", None)[0]  # nvcc version unknown: torch's own check decides
    for args, why in [((None, "/usr/local/cuda", (13, 0)), "CPU build"),
                      (("13.0", None, None), "CUDA_HOME"),
                      (("12.8", "/usr/local/cuda", (13, 0)), "CUDA 12.x toolkit")]:
        use, reason = plan(*args)
        assert not use and why in reason and "CPU-only" in reason, reason
    assert not plan("13.0", "/usr/local/cuda", (13, 0), force_cpu=True)[0]
    assert not plan("13.0", "/usr/local/cuda", (13, 0), have_cu_sources=False)[0]


def test_setup_py_asks_nvcc_for_no_fma_contraction():
    text = (REPO / "setup.py").read_text()
    assert re.search(r'"nvcc":\s*\[[^\]]*"-fmad=false"', text)
    assert "-fmad=false" in (REPO / "CMakeLists.txt").read_text()


def test_backend_finds_the_installed_torch_of_the_target_interpreter(backend, tmp_path):
    with_torch, _ = _venv(tmp_path / "with", with_pip=False, see_host_torch=True)
    found = backend.installed_torch_location(str(with_torch))
    assert found == {"path": str(HOST_TORCH_SITE), "version": str(torch.__version__)}
    without, _ = _venv(tmp_path / "without", with_pip=False, see_host_torch=False)
    user_site = _run([without, "-c", "import site; print(site.getusersitepackages())"], cwd=tmp_path).stdout.strip()
    if (Path(user_site) / "torch").exists():
        pytest.skip(f"a torch in the user site {user_site} is visible to every venv of this Python")
    assert backend.installed_torch_location(str(without)) is None


def test_backend_requires_torch_only_when_none_is_installed(backend, monkeypatch):
    monkeypatch.setattr(backend, "_torch_importable", lambda: False)
    monkeypatch.setattr(backend, "installed_torch_location", lambda python=None: None)
    for hook in ("get_requires_for_build_wheel", "get_requires_for_build_editable"):
        assert getattr(backend, hook)() == [backend.TORCH_REQUIREMENT]
    # The build requirement is the runtime dependency's range; the static requires have no torch.
    pyproject = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*)\]", pyproject, re.M).group(1)
    assert f'"{backend.TORCH_REQUIREMENT}"' in deps
    requires = re.search(r"^requires = \[(.*)\]", pyproject, re.M).group(1)
    assert "torch" not in requires
    assert re.search(r'^build-backend = "igm_build_backend"$', pyproject, re.M)
