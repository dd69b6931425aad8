"""Build sipedge's native core.

csrc/*.c is plain C (no Python.h) compiled once into a static library with
strict warnings (-Wall -Wextra ...); each src/sipedge/_*.pyx becomes an
extension module linked against it. Warnings are errors only where the
project builds for itself (``make``, CI: SIPEDGE_WERROR=1), not in a user's
sdist build on a compiler we have not tried.

Environment:
  SIPEDGE_NO_EXTENSIONS=1  build no extension: the pure-Python twin is used
  SIPEDGE_DEBUG=1          -O0 -g -fsanitize=address,undefined for C and Cython
  SIPEDGE_WERROR=1         -Werror for the C core (set by the Makefile and CI)
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("SIPEDGE_NO_EXTENSIONS")
DEBUG = _flag("SIPEDGE_DEBUG")
WERROR = _flag("SIPEDGE_WERROR")

if DEBUG:
    opt = ["-O0", "-g3", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-fno-sanitize-recover=undefined"]
    link = ["-fsanitize=address,undefined"]
else:
    opt = ["-O3"]
    link = []

STRICT = ["-std=c11", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
          "-Wmissing-prototypes", "-Wvla", "-D_GNU_SOURCE"]
WARNINGS_AS_ERRORS = ["-Werror"] if WERROR else []

csrc = sorted(glob.glob("csrc/*.c"))
libraries = []
ext_modules = []

if not NO_EXTENSIONS:
    from Cython.Build import cythonize

    # obj_deps "": every object is rebuilt when a header changes (setuptools'
    # build_clib otherwise compares each object with its .c file only)
    libraries = [("sipedge_core", {"sources": csrc, "include_dirs": ["csrc"],
                                   "obj_deps": {"": sorted(glob.glob("csrc/*.h"))},
                                   "cflags": opt + STRICT + WARNINGS_AS_ERRORS})]
    pyx = sorted(glob.glob("src/sipedge/_*.pyx"))
    exts = [
        Extension(
            "sipedge." + os.path.splitext(os.path.basename(p))[0],
            [p],
            include_dirs=["csrc"],
            extra_compile_args=opt,
            extra_link_args=link,
            depends=csrc + sorted(glob.glob("csrc/*.h")),
        )
        for p in pyx
    ]
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "cdivision": True, "embedsignature": True}
    if DEBUG:
        directives.update(boundscheck=True, wraparound=True)
    ext_modules = cythonize(exts, compiler_directives=directives,
                            annotate=_flag("SIPEDGE_ANNOTATE"),
                            quiet=True, nthreads=0)



class build_ext_with_core(build_ext):
    """``build_ext`` alone (e.g. ``--inplace``) also builds the C core first."""

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()


# run by pip's build backend, `python setup.py ...` and make (all as __main__);
# .ci/cross-build reads the definitions above without building
if __name__ == "__main__":
    setup(libraries=libraries, ext_modules=ext_modules, cmdclass={"build_ext": build_ext_with_core})
