"""Realistic-looking demo data for the bank / model-owner showcase.

Drawn with the project's AES-CTR generator keyed from the OS CSPRNG (never
``random`` or numpy's generators, here as everywhere). The data is public
demo material, not secret shares; only its look matters: annual incomes
log-normal around 95,000, outstanding debt 0-25,000, both to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpc_core.prg import random_words

FloatArray = npt.NDArray[np.float64]


def uniform(n: int) -> FloatArray:
    """``n`` floats uniform in [0, 1) with 53 random bits each."""
    values: FloatArray = (random_words(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return values


def normal(n: int) -> FloatArray:
    """``n`` standard normal floats (Box-Muller)."""
    u1, u2 = 1.0 - uniform(n), uniform(n)
    values: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return values


@dataclass(frozen=True)
class ShowcaseData:
    """The model ``y = a*x + b*z + c`` and the two banks' columns."""

    a: float
    b: float
    c: float
    x: FloatArray
    z: FloatArray

    def error_bound(self, fractional_bits: int) -> FloatArray:
        """Per-row bound on |MPC - plaintext| from fixed-point rounding (README)."""
        half_ulp = 2.0 ** -(fractional_bits + 1)
        magnitude = abs(self.a) + abs(self.b) + np.abs(self.x) + np.abs(self.z) + 1.0
        bound: FloatArray = half_ulp * magnitude + 2 * half_ulp**2
        return bound

    def plaintext(self) -> FloatArray:
        """The predictions computed in the clear, for comparison."""
        expected: FloatArray = self.a * self.x + self.b * self.z + self.c
        return expected


def showcase_data(records: int) -> ShowcaseData:
    """A credit-limit model and ``records`` customers' income and debt."""
    income = np.round(np.exp(np.log(95_000.0) + 0.35 * normal(records)), 2)
    debt = np.round(25_000.0 * uniform(records), 2)
    return ShowcaseData(a=0.2731, b=-0.5912, c=5000.0, x=income, z=debt)


@dataclass(frozen=True)
class TrainingData:
    """The banks' columns and the model owner's labels: the credit limits it granted these customers."""

    x: FloatArray
    z: FloatArray
    label: FloatArray

    def plaintext_fit(self) -> tuple[FloatArray, float]:
        """Least squares in the clear (``numpy.linalg.lstsq``): weights (a, b) and intercept c."""
        design = np.column_stack([self.x, self.z, np.ones_like(self.x)])
        solution = np.asarray(np.linalg.lstsq(design, self.label, rcond=None)[0], dtype=np.float64)
        return solution[:2], float(solution[2])


def training_data(records: int) -> TrainingData:
    """``records`` customers' income and debt, and limits ``a x + b z + c`` plus noise of about 800."""
    model = showcase_data(records)
    noise = np.round(800.0 * normal(records), 2)
    return TrainingData(model.x, model.z, np.round(model.plaintext() + noise, 2))
