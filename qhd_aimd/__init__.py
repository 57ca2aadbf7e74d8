"""qhd_aimd: gauge-invariant non-adiabatic molecular dynamics with the conditional electronic
density operator of the exact factorization (Martinazzo & Burghardt)."""

__version__ = "0.1.0"
