"""Build script: the pure-Python package plus, where a compiler exists, native extensions.

Everything declarative lives in pyproject.toml. This file only decides which extensions to build:
``native_extensions()`` collects them from csrc/ (C++ CPU backend wherever a C++ compiler
exists; CUDA wherever nvcc exists), and each can be forced with an environment variable
(KMAS_BUILD_CPU / KMAS_BUILD_CUDA = 0 or 1). With nothing to build, the package installs as
pure Python and the reference backend serves every call.

- ``kmas_kernels._native_cpu``: csrc/cpu + csrc/bindings, C++17, OpenMP where the compiler has it
  (the sampling top-k and the relational message-passing op ``rspmm``).
- ``kmas_kernels._native_cuda``: csrc/cuda (.cu, compiled by nvcc from a custom build_ext) +
  csrc/bindings (plain C++), linked with the static CUDA runtime, so importing it needs no
  libcudart (only a driver to run). Targets: KMAS_CUDA_ARCHS (default "80;90": SASS for sm_80 and
  sm_90 plus PTX for compute_90, which newer GPUs JIT). CUDA is found through CUDA_HOME /
  CUDA_PATH, else the nvcc on PATH, else /usr/local/cuda.

Both share the header-only core csrc/core/kmas_core.h, and both compile without fast-math and
without FMA contraction (-ffp-contract=off / --fmad=false) so that the Gumbel keys are the same
float operations on CPU and GPU. Not forced (variable unset), an extension that cannot be built
is skipped with a message; forced to 1, a failure stops the build.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
CXX_FLAGS = ["-O3", "-g0", "-std=c++17", "-fno-fast-math", "-ffp-contract=off", "-fvisibility=hidden"]


def _say(message: str) -> None:
    print(f"kmas_kernels setup: {message}", file=sys.stderr, flush=True)


def _env_switch(name: str):
    """True / False when the variable forces a build on or off, None when unset."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return None
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise RuntimeError(f"{name} must be 0 or 1, got {os.environ[name]!r}")


def _cxx_compiler():
    for candidate in (os.environ.get("CXX", "").split() or [None])[:1] + ["c++", "g++", "clang++"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _pybind11_include():
    try:
        import pybind11
    except ImportError:
        return None
    return pybind11.get_include()


def _cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").exists():
            return Path(home)
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = Path(os.path.realpath(nvcc)).parent.parent
        if (home / "include" / "cuda_runtime.h").exists():
            return home
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return Path("/usr/local/cuda")
    return None


def _cudart_static(home: Path):
    for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
        lib = home / sub / "libcudart_static.a"
        if lib.exists():
            return lib
    return None


class KMASExtension(Extension):
    """An Extension that may be skipped (``optional_build``) and may carry .cu sources."""

    def __init__(self, name, sources, *, optional_build, cuda_home=None, **kwargs):
        super().__init__(name, sources, **kwargs)
        self.optional_build = optional_build
        self.cuda_home = cuda_home


def _decide(name: str, switch, missing: list) -> bool:
    """Whether to build; raises when forced on with something missing."""
    if switch is False:
        _say(f"{name}: skipped (disabled by environment)")
        return False
    if missing:
        if switch:
            raise RuntimeError(f"{name} was forced on but cannot be built: {', '.join(missing)}")
        _say(f"{name}: skipped ({', '.join(missing)})")
        return False
    return True


def native_extensions() -> list:
    """Extension modules to build from csrc/ (see the module docstring)."""
    if not (ROOT / "csrc").is_dir():
        return []
    extensions = []
    # headers (and .cu files, compiled outside setuptools) trigger a rebuild when they change
    depends = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cu"))
    pybind = _pybind11_include()
    cxx = _cxx_compiler()

    switch = _env_switch("KMAS_BUILD_CPU")
    missing = ([] if cxx else ["no C++ compiler found"]) + ([] if pybind else ["pybind11 is not installed"])
    if _decide("CPU extension (kmas_kernels._native_cpu)", switch, missing):
        extensions.append(
            KMASExtension(
                "kmas_kernels._native_cpu",
                ["csrc/bindings/cpu_module.cpp", "csrc/cpu/topk_cpu.cpp", "csrc/cpu/rspmm_cpu.cpp"],
                optional_build=switch is None,
                include_dirs=[pybind],
                depends=depends,
                language="c++",
                extra_compile_args=CXX_FLAGS + ["-fopenmp"],
                extra_link_args=["-fopenmp"],
            )
        )

    switch = _env_switch("KMAS_BUILD_CUDA")
    home = _cuda_home()
    missing = [] if cxx else ["no C++ compiler found"]
    missing += [] if pybind else ["pybind11 is not installed"]
    if home is None:
        missing.append("nvcc not found (set CUDA_HOME)")
    elif _cudart_static(home) is None:
        missing.append(f"no libcudart_static.a under {home}")
    if _decide("CUDA extension (kmas_kernels._native_cuda)", switch, missing):
        cudart = _cudart_static(home)
        extensions.append(
            KMASExtension(
                "kmas_kernels._native_cuda",
                ["csrc/bindings/cuda_module.cpp", "csrc/cuda/topk_cuda.cu"],
                optional_build=switch is None,
                cuda_home=home,
                include_dirs=[pybind],
                depends=depends,
                language="c++",
                extra_compile_args=list(CXX_FLAGS),
                extra_objects=[str(cudart)],
                libraries=["dl", "rt", "pthread"],
            )
        )
    return extensions


def _cuda_arch_flags() -> list:
    archs = [a.strip() for a in os.environ.get("KMAS_CUDA_ARCHS", "80;90").replace(",", ";").split(";") if a.strip()]
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]  # PTX for newer GPUs
    return flags


class BuildExt(build_ext):
    """build_ext that compiles .cu sources with nvcc and lets optional extensions fail softly."""

    def build_extension(self, ext):
        try:
            self._build(ext)
        except Exception as err:  # noqa: BLE001 - any failure of an optional build is a skip
            if not getattr(ext, "optional_build", False):
                raise
            _say(f"{ext.name}: skipped, build failed: {err}")

    def _build(self, ext):
        cu = [s for s in ext.sources if s.endswith(".cu")]
        if cu:
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = [self._nvcc(src, ext) for src in cu] + list(ext.extra_objects)
        try:
            super().build_extension(ext)
        except Exception:
            if "-fopenmp" not in ext.extra_compile_args:
                raise
            _say(f"{ext.name}: retrying without OpenMP")
            ext.extra_compile_args = [a for a in ext.extra_compile_args if a != "-fopenmp"]
            ext.extra_link_args = [a for a in ext.extra_link_args if a != "-fopenmp"]
            super().build_extension(ext)

    def _nvcc(self, source: str, ext) -> str:
        home = ext.cuda_home
        nvcc = str(home / "bin" / "nvcc")
        obj = Path(self.build_temp) / (source.replace("/", "_") + ".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        command = [
            nvcc, "-c", source, "-o", str(obj), "-std=c++17", "-O3", "--fmad=false", "--threads", "2",
            "-Xcompiler", "-fPIC,-ffp-contract=off,-fno-fast-math,-fvisibility=hidden",
        ] + _cuda_arch_flags()
        cxx = os.environ.get("CUDAHOSTCXX")
        if cxx:
            command += ["-ccbin", cxx]
        _say(" ".join(command))
        subprocess.run(command, check=True)
        return str(obj)


setup(ext_modules=native_extensions(), cmdclass={"build_ext": BuildExt})
