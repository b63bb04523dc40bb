"""Build script for the compiled ring kernel; all metadata lives in pyproject.toml.

``mpc_core._ringkernel`` is a small C extension (limited API, one wheel for
every CPython >= 3.11) with the Z_2^64 and Z_2^128 array kernels. It needs a
C compiler with ``unsigned __int128`` (GCC or Clang on a 64-bit target).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mpc_core._ringkernel",
            sources=["mpc_core/_ringkernel.c"],
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
