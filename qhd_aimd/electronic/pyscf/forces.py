"""Analytic SA-CASSCF derivatives (the ``_Forces`` part of ``CasscfBackend``).

``force(data, rho)``
    Ehrenfest force F_k = -Tr(rho dH/dx_k). ``force="one_solve"`` (default): ONE CP-SA-CASSCF
    Lagrangian solve with a rho-weighted source (see ``_RhoLagrangian``), which equals the sum of
    the N state gradients and N(N-1)/2 NACs term by term because every piece of the Lagrangian is
    linear in its sources. ``force="term_by_term"``: N gradient calls and N(N-1)/2 NAC calls of
    PySCF (``derivatives``), assembled with ``dhdx_from_derivatives``.

Analytic derivatives require equal state-averaging weights (a PySCF restriction) and no density
fitting (not implemented here); both raise ``MissingPropertyError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyscf import lib, mcscf
from pyscf.fci import direct_spin1
from pyscf.grad import casscf as casscf_grad
from pyscf.grad import sacasscf as sacasscf_grad
from pyscf.mcscf import newton_casscf
from pyscf.nac import sacasscf as nac_sacasscf

from qhd_aimd.electronic.base import ElectronicData, dhdx_from_derivatives, meanfield_force
from qhd_aimd.electronic.pyscf.molecule import restrict_to_sigma_rotations
from qhd_aimd.electronic.pyscf.handle import _refuse_lean
from qhd_aimd.errors import ConfigError, ConvergenceError, MissingPropertyError


# --------------------------------------------------------------------------------------------
# combined (rho-weighted) CP-SA-CASSCF Lagrangian
# --------------------------------------------------------------------------------------------
def _combined_rdm12(ci, ncas, nelecas, r):
    """sum_n r_nn D_n + sum_{n<m} 2 r_nm sym(T_nm) for 1- and 2-RDMs (r real symmetric)."""
    n = len(ci)
    d1 = np.zeros((ncas, ncas))
    d2 = np.zeros((ncas,) * 4)
    for i in range(n):
        for j in range(i, n):
            w = r[i, i] if i == j else 2.0 * r[i, j]
            if w == 0.0:
                continue
            if i == j:
                t1, t2 = direct_spin1.make_rdm12(ci[i], ncas, nelecas)
            else:
                # same as pyscf.nac.sacasscf.make_fcasscf_nacs (ket=i, bra=j)
                t1, t2 = direct_spin1.trans_rdm12(ci[j], ci[i], ncas, nelecas)
                t1 = 0.5 * (t1 + t1.T)
                t2 = 0.5 * (t2 + t2.transpose(1, 0, 3, 2))
            d1 += w * t1
            d2 += w * t2
    return d1, d2


class _RhoLagrangian(sacasscf_grad.Gradients):
    """SA-CASSCF Lagrangian whose source is Tr(R dH): one linear solve for the Ehrenfest force.

    With R real symmetric and Tr R = 1, the quantity

        G = sum_n R_nn dE_n/dx + sum_{n<m} 2 R_nm h_nm,   h_nm = <n|dH/dx|m> (PySCF NAC with
                                                               mult_ediff, state=(n, m))

    is obtained exactly like one PySCF state gradient (``lagrange.Gradients.kernel``) with

    * Hamiltonian response: the single-state CASSCF gradient (nuclear repulsion + core + active)
      evaluated with the combined density D = sum R_nn D_n + sum_{n<m} 2 R_nm sym(T_nm) (the
      constant core/nuclear part comes with weight Tr R = 1, exactly as in sum R_nn grad_n and
      as the NACs' ``grad_elec_active`` which has no core part), plus the CSF term
      sum_{n<m} 2 R_nm (E_m - E_n) <n|d m>_CSF from one antisymmetric transition density;
    * wave-function response (Lagrangian source): orbital part = one ``gen_g_hop`` call with D
      (same linearity argument), CI part block k = sum_m R_km g^CI_m, where g^CI_m is the CI
      gradient of root m (gradients put g^CI_n in block n; a NAC (n, m) puts g^CI_n / 2 in
      block m and g^CI_m / 2 in block n);
    * the Hessian, preconditioner and L . dJ/dx are those of PySCF (independent of the source).
    """

    _keys = {"rho_weights"}

    def __init__(self, mc, r):
        self.rho_weights = np.asarray(r, float)
        sacasscf_grad.Gradients.__init__(self, mc, state=0)

    def _patched_fcasscf(self, ci):
        d1, d2 = _combined_rdm12(ci, self.base.ncas, self.base.nelecas, self.rho_weights)
        attr = {
            "make_rdm12": lambda *args, **kwargs: (d1, d2),
            "make_rdm1": lambda *args, **kwargs: d1,
            "make_rdm2": lambda *args, **kwargs: d2,
        }
        return self.make_fcasscf(state=0, fcisolver_attr=attr)

    def get_wfn_response(self, atmlst=None, state=None, verbose=None, mo=None, ci=None, **kwargs):
        if verbose is None:
            verbose = self.verbose
        if mo is None:
            mo = self.base.mo_coeff
        if ci is None:
            ci = self.base.ci
        r = self.rho_weights
        fcasscf = self._patched_fcasscf(ci)
        fcasscf.mo_coeff = mo
        eris = fcasscf.ao2mo(mo)
        g_all = np.zeros(self.nlag)
        gci = []
        for n in range(self.nroots):
            fcasscf.ci = ci[n]
            g = newton_casscf.gen_g_hop(fcasscf, mo, ci[n], eris, verbose)[0]
            if n == 0:
                g_all[: self.ngorb] = g[: self.ngorb]
            gci.append(g[self.ngorb :])
        gci = np.asarray(gci)
        g_all[self.ngorb :] = (r @ gci).ravel()
        return g_all

    def get_ham_response(self, state=None, atmlst=None, verbose=None, mo=None, ci=None,
                         eris=None, mf_grad=None, **kwargs):
        if atmlst is None:
            atmlst = self.atmlst
        if verbose is None:
            verbose = self.verbose
        if mo is None:
            mo = self.base.mo_coeff
        if ci is None:
            ci = self.base.ci
        if mf_grad is None:
            mf_grad = self.base._scf.nuc_grad_method()
        r = self.rho_weights
        fg = casscf_grad.Gradients(self._patched_fcasscf(ci))
        fg._finalize = lambda: None
        de = fg.kernel(mo_coeff=mo, ci=ci[0], atmlst=atmlst, verbose=verbose)
        # CSF term of the NACs, exactly pyscf.nac.sacasscf.nac_csf * (E_bra - E_ket)
        ncore, ncas, nelecas = self.base.ncore, self.base.ncas, self.base.nelecas
        e = np.asarray(self.base.e_states)
        tm = np.zeros((ncas, ncas))
        for i in range(self.nroots):
            for j in range(i + 1, self.nroots):
                if r[i, j] == 0.0:
                    continue
                t = direct_spin1.trans_rdm1(ci[j], ci[i], ncas, nelecas)  # ket=i, bra=j
                tm += 2.0 * r[i, j] * (e[j] - e[i]) * (t.T - t)
        if np.any(tm):
            mo_cas = mo[:, ncore : ncore + ncas]
            de = de + nac_sacasscf._nac_csf(self.mol, mf_grad, mo_cas @ tm @ mo_cas.T, atmlst)
        return de


class _DerivativeIntegrals:
    """The AO derivative integrals (nabla_x i j|k l) of one geometry, computed once and shared
    by every part of one analytic-gradient evaluation.

    PySCF's SA-CASSCF gradient (``grad.casscf.grad_elec``, ``grad.sacasscf.Lorb_dot_dgorb_dx``,
    ``Lci_dot_dgci_dx``) evaluates the same ``int2e_ip1`` integrals three times, block by
    atom, and three integral-direct derivative J/K builds (``grad.rhf.get_jk``); for ethylene
    6-31G* that is ~80 % of the force. Inside ``with _DerivativeIntegrals(mol, max_mb)`` the
    full (3, nao, nao, nao(nao+1)/2) tensor is computed on first use, ``mol.intor`` serves the
    per-atom ``int2e_ip1`` blocks from it, and ``grad.rhf.get_jk`` for this ``mol`` contracts
    it (J = ((-nabla i) j|kl) D_lk, K = ((-nabla i) j|kl) D_jk, PySCF's convention). Results
    equal PySCF's to round-off (tested). Used only when the tensor fits in ``max_mb``
    megabytes; otherwise (and for any other molecule or integral) PySCF's own path runs.
    """

    def __init__(self, mol, max_mb: float):
        self.mol = mol
        nao = mol.nao_nr()
        self.enabled = 3 * nao * nao * nao * (nao + 1) / 2 * 8 / 1e6 <= max_mb
        self._eri1 = None

    def eri1(self):
        if self._eri1 is None:
            self._eri1 = self._intor0("int2e_ip1", comp=3, aosym="s2kl")
        return self._eri1

    def __enter__(self):
        if not self.enabled:
            return self
        from pyscf.grad import rhf as rhf_grad
        self._rhf_grad, self._get_jk0 = rhf_grad, rhf_grad.get_jk
        self._intor0 = self.mol.intor
        self.mol.intor = self._intor
        rhf_grad.get_jk = self._get_jk
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._rhf_grad.get_jk = self._get_jk0
            del self.mol.intor  # the instance attribute; the class method shows again
        return False

    def _intor(self, intor, comp=None, hermi=0, aosym="s1", out=None, shls_slice=None,
               grids=None):
        nbas = self.mol.nbas
        if (intor == "int2e_ip1" and comp == 3 and aosym == "s2kl" and out is None
                and shls_slice is not None and tuple(shls_slice[2:]) == (0, nbas) * 3):
            loc = self.mol.ao_loc_nr()
            return self.eri1()[:, loc[shls_slice[0]]:loc[shls_slice[1]]].copy()
        return self._intor0(intor, comp=comp, hermi=hermi, aosym=aosym, out=out,
                            shls_slice=shls_slice, grids=grids)

    def _get_jk(self, mol, dm):
        if mol is not self.mol:
            return self._get_jk0(mol, dm)
        dms = np.asarray(dm)
        single = dms.ndim == 2
        dms = dms.reshape(-1, mol.nao_nr(), mol.nao_nr())
        eri1 = self.eri1()
        nao = dms.shape[-1]
        vj = np.empty((len(dms), 3, nao, nao))
        vk = np.empty((len(dms), 3, nao, nao))
        for n, d in enumerate(dms):
            dsym = d + d.T
            dsym[np.diag_indices(nao)] *= 0.5
            vj[n] = -np.einsum("xijp,p->xij", eri1, lib.pack_tril(dsym))
        for i0 in range(0, nao, 8):  # K needs the (k, l) pair unpacked: a few rows at a time
            blk = lib.unpack_tril(eri1[:, i0:i0 + 8].reshape(-1, eri1.shape[-1]))
            blk = blk.reshape(3, -1, nao, nao, nao)
            vk[:, :, i0:i0 + 8] = -np.einsum("xijkl,njk->nxil", blk, dms)
        if single:
            return vj[0], vk[0]
        return vj, vk


class _Forces:
    """Derivatives, a base class of ``CasscfBackend`` (reads the backend's parameters and its
    PySCF builder ``_mf``)."""

    def rebuild(self, data_or_handle) -> Any:
        """Converged PySCF SA-CASSCF object (orbitals, CI, energies) rebuilt from a handle."""
        h = getattr(data_or_handle, "handle", data_or_handle)
        _refuse_lean(h, "derivatives")
        self._check_derivatives()
        mol = h.mol()
        mf = self._mf(mol)
        mc = mcscf.CASSCF(mf, h.ncas, h.nelecas)
        ss = 0.5 * h.spin * (0.5 * h.spin + 1.0)
        mc = mc.fix_spin_(ss=ss).state_average_(list(h.weights))
        mc.verbose = 0
        mc.mo_coeff = np.array(h.mo_coeff)
        if getattr(self, "symmetry", None) == "sigma":
            restrict_to_sigma_rotations(mc)  # the Lagrangian's orbital space: as in the solve
        mc.ci = [np.array(c) for c in h.ci]
        mc.fcisolver.e_states = list(np.asarray(h.energies, float))
        mc.e_tot = float(np.dot(h.weights, h.energies))
        mc.converged = True
        return mc

    def _check_derivatives(self):
        if self.density_fit:
            raise MissingPropertyError("analytic SA-CASSCF forces with density fitting are not "
                                       "implemented; set electronic.density_fit: false")
        if max(self.weights) - min(self.weights) > 1e-12:
            raise MissingPropertyError("PySCF SA-CASSCF analytic gradients need equal weights")

    def _tune(self, g):
        g.verbose = 0
        g.conv_rtol = self.lagrange_tol
        g.conv_atol = 1e-14
        g.max_cycle = self.lagrange_max_cycle
        return g

    def _check_lagrange(self, g, what):
        if not g._conv:
            raise ConvergenceError(f"CP-SA-CASSCF Lagrange equations for {what} did not converge "
                                   f"in {g.max_cycle} iterations (rtol {g.conv_rtol})")

    def derivatives(self, data: ElectronicData):
        """Term-by-term analytic derivatives.

        Returns
        -------
        gradients : (N, D) hartree/bohr, dE_n/dx_k
        couplings : (N, N, D) 1/bohr, d^k_nm = <u_n|d_k u_m> (including the CSF term, i.e. the
            exact derivative of the CASSCF state; antisymmetric)
        """
        mc = self.rebuild(data)
        n, d = self.n_states, 3 * len(self.symbols)
        grads = np.zeros((n, d))
        couplings = np.zeros((n, n, d))
        g = self._tune(mc.nuc_grad_method())
        nac = self._tune(mc.nac_method())
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            for i in range(n):
                grads[i] = g.kernel(state=i).ravel()
                self._check_lagrange(g, f"the gradient of state {i}")
            for i in range(n):
                for j in range(i + 1, n):
                    # PySCF returns <u_i|d u_j> for state=(i, j) (its docstring says the
                    # opposite; tests check this against finite differences of the overlaps)
                    v = nac.kernel(state=(i, j), use_etfs=False).ravel()
                    self._check_lagrange(nac, f"the coupling {i}-{j}")
                    couplings[i, j] = v
                    couplings[j, i] = -v
        return grads, couplings

    def state_gradients(self, data: ElectronicData) -> np.ndarray:
        """(N, D) dE_n/dx_k, hartree/bohr: the state gradients of ``derivatives`` without the
        couplings (N response solves instead of N (N + 1) / 2; the adiabatic momenta of the
        coupled methods need only these, ``dynamics.decoherence``)."""
        mc = self.rebuild(data)
        grads = np.zeros((self.n_states, 3 * len(self.symbols)))
        g = self._tune(mc.nuc_grad_method())
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            for i in range(self.n_states):
                grads[i] = g.kernel(state=i).ravel()
                self._check_lagrange(g, f"the gradient of state {i}")
        return grads

    def dhdx(self, data: ElectronicData) -> np.ndarray:
        """(D, N, N) <u_n|dH/dx_k|u_m>, hartree/bohr, from ``derivatives``."""
        g, c = self.derivatives(data)
        return dhdx_from_derivatives(data.energies, g, c)

    def force(self, data: ElectronicData, rho: np.ndarray, mode: str | None = None) -> np.ndarray:
        """(D,) Ehrenfest force -Tr(rho dH/dx_k), hartree/bohr.

        ``mode`` overrides the backend's ``force_mode`` ("one_solve" or "term_by_term").
        """
        mode = mode or self.force_mode
        rho = np.asarray(rho)
        if data.dhdx is not None:
            return meanfield_force(data.dhdx, rho)
        if mode == "term_by_term":
            return meanfield_force(self.dhdx(data), rho)
        if mode != "one_solve":
            raise ConfigError(f"unknown force mode {mode!r}")
        # the states are real, so dH_nm is real symmetric and only Re(rho) contributes
        r = np.real(rho)
        r = 0.5 * (r + r.T)
        tr = float(np.trace(r))
        if not tr > 0:
            raise ValueError(f"rho must have positive trace, got {tr}")
        mc = self.rebuild(data)
        lag = self._tune(_RhoLagrangian(mc, r / tr))
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            de = lag.kernel(state=0)
        self._check_lagrange(lag, "the rho-weighted force")
        return -tr * np.asarray(de).ravel()
