r"""The continuous adjoint of the learning problem (optimise-then-discretise), beside pyadjoint's discrete one.

For one pair :math:`(c, f)` and :math:`J = \frac{1}{|\Omega|}\int_\Omega (u(T) - c)^2\,dx`, the adjoint
:math:`p = (p_1, p_2)` solves, backwards from :math:`p(T) = \frac{2}{|\Omega|}(u(T) - c,\ 0)`,

.. math:: -(\partial_t p, \varphi) + (D(w)\nabla\varphi, \nabla p) + (D'(w)[\varphi]\,\nabla w, \nabla p)
          + \lambda(\varphi_1, p_1) + \mu(\varphi_2, p_2) - (\psi'(v)\varphi_2, p_1) = 0 \qquad\forall\varphi ,

(the natural boundary condition is built in; :math:`\psi` the optional reaction of the learned models), and for
a parameter :math:`q` of stage :math:`k` acting on :math:`I_k\subset[0,T]`

.. math:: \frac{dJ}{dq} = -\int_{I_k}\!\int_\Omega (\partial_q D\,\nabla w) : \nabla p
                          - \partial_q R\cdot p \;dx\,dt .

See ``demos/continuous_adjoint.md`` for the derivation. :class:`ContinuousAdjoint` solves this with its own
discretisation — a θ-scheme backwards in time (implicit Euler by default) on the adjoint operator evaluated at
the stored forward states, and the trapezoidal rule for the time integral — independent of pyadjoint's tape.
:class:`GradientProblem` gives the same gradient three ways: continuous adjoint, discrete adjoint
(pyadjoint) and central finite differences, all in the flat layout of
:func:`fem_crossdiff.learning.parametrisation.pack`.
"""
import time as _time

import numpy as np
import ufl
import firedrake as fd
from firedrake.adjoint import stop_annotating

from firedrake.assemble import get_assembler

from ..errors import InputError
from ..fem.solvers import LINEAR_SOLVER, linear_solver_parameters
from ..learning.loss import DatasetLoss
from ..learning.parametrisation import pack
from ..model import PSI_PARAMETER

__all__ = ["ContinuousAdjoint", "GradientProblem", "continuous_gradient", "discrete_gradient", "fd_gradient",
           "DIRECT_SOLVER", "relative_gap"]

#: Direct solves: gradients reproducible to round-off (what finite differences and rate studies need).
DIRECT_SOLVER = {"mat_type": "aij", "ksp_type": "preonly", "pc_type": "lu",
                 "snes_rtol": 1e-13, "snes_atol": 1e-15, "snes_stol": 0.0}


def relative_gap(g, ref):
    """:math:`\\|g - g_{ref}\\| / \\|g_{ref}\\|` (Euclidean norms of the flat vectors)."""
    return float(np.linalg.norm(np.asarray(g) - np.asarray(ref)) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- the coefficients
class Coefficients:
    r"""UFL for :math:`D(w) = G^{1/2} M G^{1/2}`, i.e. :math:`D_{ij} = M_{ij}\,o_{ij}` with
    :math:`o_{ii} = g_{ii}`, :math:`o_{12} = o_{21} = \sqrt{g_{11}g_{22}}`, and its derivatives.

    The state enters through ``ufl.variable``\ s :math:`v = w_2` and :math:`a = \nabla w_1`, so
    :math:`\partial_v D_{ij} = M_{ij}\,\partial_v o_{ij}` and :math:`\partial_a D_{ij}` are exact UFL derivatives
    of the influence functions; the influence parameters (``k11``, ``w22`` …) are variables too. :math:`M` and
    its derivatives in :math:`d_{11}, d_{22}, \rho, \beta` are written out by hand. The off-diagonal factor
    follows :meth:`fem_crossdiff.fem.forms.DiscreteModel.D` exactly.
    """

    def __init__(self, dm, W, k):
        self.dm = dm
        p = self.p = dm.params[k]
        self.v = ufl.variable(W[1])
        self.a = ufl.variable(ufl.grad(W[0]))
        self.q = {}
        g11, g22 = (self._influence(ij, p) for ij in ("11", "22"))
        off = ufl.sqrt(g11 * g22)                            # D = G^{1/2} M G^{1/2}, as DiscreteModel.D
        self.o = [[g11, off], [off, g22]]
        d11, d22, rho, beta = p["d11"], p["d22"], p["rho"], p["beta"]
        r = ufl.sqrt(d11 * d22)
        self.M = [[d11, rho * r + beta], [rho * r - beta, d22]]
        # ∂M/∂q for the matrix parameters: d12 = ρ√(d11 d22) + β, d21 = ρ√(d11 d22) − β
        self.dM = {"d11": [[1.0, rho * r / (2 * d11)], [rho * r / (2 * d11), 0.0]],
                   "d22": [[0.0, rho * r / (2 * d22)], [rho * r / (2 * d22), 1.0]],
                   "rho": [[0.0, r], [r, 0.0]],
                   "beta": [[0.0, 1.0], [-1.0, 0.0]]}

    def psi_of_v(self):
        """The reaction :math:`\\psi(v; q)` of the :math:`u`-equation (None without one), its weights a variable."""
        psi = self.dm.model.psi
        if psi is None:
            return None
        if PSI_PARAMETER not in self.q:
            self.q[PSI_PARAMETER] = ufl.variable(ufl.as_vector(self.p[PSI_PARAMETER]))
        return psi.evaluate(self.v, self.q[PSI_PARAMETER], lib=ufl)

    def _influence(self, ij, p):
        """:math:`g_{11}h_{11}` or :math:`g_{22}`: a product of :meth:`_factor`\\ s."""
        out = self._factor(ij, p)
        for key in self.dm.model.factors(ij)[1:]:
            if self.dm.model.influence(key).kind != "one":
                out = out * self._factor(key, p)
        return out

    def _factor(self, ij, p):
        """:math:`g(s; q)`, ``s`` the variable :math:`v` or :math:`a=\\nabla u`, ``q`` a variable too."""
        infl = self.dm.model.influence(ij)
        name = infl.parameter(ij)
        if name is None:
            return ufl.as_ufl(1.0)
        par = p[name]
        q = self.q[name] = ufl.variable(ufl.as_vector(par) if isinstance(par, (list, tuple)) else par)
        if infl.variable == "v":
            return infl.evaluate(self.v, q, lib=ufl)
        return infl.of_grad2(ufl.inner(self.a, self.a), q, lib=ufl)

    @property
    def D(self):
        return ufl.as_matrix([[self.M[i][j] * self.o[i][j] for j in range(2)] for i in range(2)])

    def dD_matrix(self, name):
        r""":math:`\partial D_{ij}/\partial q = (\partial M_{ij}/\partial q)\,o_{ij}`, ``q`` in d11, d22, rho, beta."""
        dM = self.dM[name]
        return ufl.as_matrix([[dM[i][j] * self.o[i][j] for j in range(2)] for i in range(2)])

    def dD(self, var):
        r""":math:`\partial D_{ij}/\partial x = M_{ij}\,\partial o_{ij}/\partial x` for ``var`` = :attr:`v`, :attr:`a`
        or an influence parameter; shape ``(2, 2) + var.ufl_shape``. (For :math:`o_{12} = \sqrt{g_{11}g_{22}}`
        this is :math:`S'MS + SMS'` with :math:`S'_{ii} = \partial_x g_{ii}/(2\sqrt{g_{ii}})`.)"""
        return ufl.as_tensor([[self.M[i][j] * ufl.diff(self.o[i][j], var) for j in range(2)] for i in range(2)])

    def dD_state(self, phi):
        r""":math:`D'(w)[\varphi] = \partial_v D\,\varphi_2 + \partial_a D\cdot\nabla\varphi_1` (a 2×2 UFL matrix)."""
        i, j, l = ufl.indices(3)
        dDa = self.dD(self.a)
        return self.dD(self.v) * phi[1] + ufl.as_tensor(dDa[i, j, l] * ufl.grad(phi[0])[l], (i, j))


# ------------------------------------------------------------------------------ the adjoint
class ContinuousAdjoint:
    r"""The adjoint IBVP discretised on its own: θ-scheme backwards in time, trapezoidal gradient quadrature.

    With the stored forward states :math:`w^n` and :math:`B_k(w;\varphi,p) = (D\nabla\varphi,\nabla p)
    + (D'(w)[\varphi]\nabla w,\nabla p) + \lambda(\varphi_1,p_1) + \mu(\varphi_2,p_2) - (\psi'(v)\varphi_2,p_1)`
    (stage ``k`` of the interval :math:`[t_n, t_{n+1}]`):

    .. math:: (p^n,\varphi) + \tau\theta B_k(w^n;\varphi,p^n) = (p^{n+1},\varphi)
              - \tau(1-\theta)B_k(w^{n+1};\varphi,p^{n+1}),

    ``theta=1`` is implicit Euler (first order), ``theta=0.5`` Crank–Nicolson (second order).
    ``state_term="explicit"`` (default) moves the :math:`D'(w)` and :math:`\psi'` parts of :math:`B_k` to the
    right-hand side at the known level :math:`t_{n+1}` — like the lagged coefficients of the semi-implicit state
    scheme, and robust where that part is anti-diffusive (Perona–Malik-type :math:`g(|\nabla u|)` with a decreasing
    flux, where the fully implicit step can be near-singular); ``"implicit"`` keeps it in the θ-scheme (needed for
    second order with θ = ½).
    """

    def __init__(self, ev, clean, theta=1.0, solver_parameters=None, state_term="explicit", area=None):
        if state_term not in ("implicit", "explicit"):
            raise InputError(f"state_term must be 'implicit' or 'explicit', got {state_term!r}")
        self.ev, self.clean, self.theta, self.state_term = ev, clean, float(theta), state_term
        W = ev.W
        self.area = fd.assemble(fd.Constant(1.0) * fd.dx(domain=ev.mesh)) if area is None else area
        self.dx = ev.dx
        self.solver_parameters = linear_solver_parameters({**LINEAR_SOLVER, **(solver_parameters or {})})
        # state at the new (earlier) level t_n, state and adjoint at the old (later) level t_{n+1}
        self.Wn, self.Wb = fd.Function(W, name="w_n"), fd.Function(W, name="w_n+1")
        self.P, self.Pb = fd.Function(W, name="p_n"), fd.Function(W, name="p_n+1")
        nst = len(ev.discrete.params)
        self._solvers = [self._make_solver(k) for k in range(nst)]
        forms = [self._gradient_form(k) for k in range(nst)]
        self._grad_assemblers = [get_assembler(F) for F in forms]   # each form preprocessed once
        self._grad_out = [fd.Cofunction(F.arguments()[0].function_space().dual()) for F in forms]

    # -- forms ----------------------------------------------------------------------------------
    def B(self, W, phi, p, k, parts=("diffusion", "state", "reaction")):
        """The adjoint operator :math:`B_k(w;\\varphi,p)` as a UFL form (``phi`` the test function); ``parts``
        selects the transposed diffusion, the :math:`D'(w)` term and the reaction Jacobian."""
        dm = self.ev.discrete
        co = Coefficients(dm, W, k)
        lam, mu = dm.params[k]["lam"], dm.params[k]["mu"]
        form = 0
        if "diffusion" in parts:
            form += ufl.inner(ufl.dot(co.D, ufl.grad(phi)), ufl.grad(p))
        if "state" in parts:
            form += ufl.inner(ufl.dot(co.dD_state(phi), ufl.grad(W)), ufl.grad(p))
            psi = co.psi_of_v()
            if psi is not None:                                   # -∂R_u/∂v = -ψ'(v): lagged like D'(w)
                form += -ufl.diff(psi, co.v) * phi[1] * p[0]
        if "reaction" in parts:
            form += lam * phi[0] * p[0] + mu * phi[1] * p[1]
        return form * self.dx

    def _make_solver(self, k):
        phi, psi = fd.TestFunction(self.ev.W), fd.TrialFunction(self.ev.W)
        tau, th = self.ev.dt, self.theta
        implicit = ("diffusion", "state", "reaction") if self.state_term == "implicit" else ("diffusion", "reaction")
        a = ufl.inner(psi, phi) * self.dx + tau * th * self.B(self.Wn, phi, psi, k, implicit)
        L = ufl.inner(self.Pb, phi) * self.dx
        if th < 1:
            L = L - tau * (1 - th) * self.B(self.Wb, phi, self.Pb, k, implicit)
        if self.state_term == "explicit":
            L = L - tau * self.B(self.Wb, phi, self.Pb, k, ("state",))
        problem = fd.LinearVariationalProblem(a, L, self.P)
        return fd.LinearVariationalSolver(problem, solver_parameters=self.solver_parameters,
                                          options_prefix=f"fem_crossdiff_adjoint_{id(self)}_{k}_")

    def integrand(self, W, P, k):
        r"""UFL vector of :math:`-(\partial_q D\nabla w):\nabla p + \partial_q R\cdot p` for every flat parameter
        ``q`` of stage ``k`` (order of :attr:`~fem_crossdiff.model.family.CrossDiffusionModel.parameter_names`)."""
        dm = self.ev.discrete
        co = Coefficients(dm, W, k)
        flux = lambda dD: -ufl.inner(ufl.dot(dD, ufl.grad(W)), ufl.grad(P))  # noqa: E731
        entries = []
        for name in dm.model.parameter_names:
            if name in co.dM:
                entries.append(flux(co.dD_matrix(name)))
            elif name == "lam":
                entries.append((self.ev.f - W[0]) * P[0])          # ∂R/∂λ = (f - u, 0)
            elif name == "mu":
                entries.append(-W[1] * P[1])                     # ∂R/∂μ = (0, -v)
            elif name == PSI_PARAMETER:                          # ∂R/∂w_m = (φ_m(v), 0)
                dpsi = ufl.diff(co.psi_of_v(), co.q[name])
                entries.extend(dpsi[m] * P[0] for m in range(dpsi.ufl_shape[0]))
            else:
                dD = co.dD(co.q[name])
                if dD.ufl_shape == (2, 2):
                    entries.append(flux(dD))
                else:
                    entries.extend(flux(dD[:, :, m]) for m in range(dD.ufl_shape[2]))
        return ufl.as_vector(entries)

    def _gradient_form(self, k):
        vec = self.integrand(self.Wn, self.P, k)
        # one assembly for all parameters: DG0 test functions (the stage parameters' space), then the sum over
        # cells is the integral
        Z = self.ev.discrete.stage_functions[k].function_space()
        return ufl.inner(vec, fd.TestFunction(Z)) * self.dx

    def _integrand_value(self, k):
        """Spatial integral of :meth:`integrand` at the state in ``Wn`` and adjoint in ``P``."""
        return self.ev.discrete.gradient_vector([self._grad_assemblers[k].assemble(tensor=self._grad_out[k])])

    # -- solving --------------------------------------------------------------------------------
    def terminal(self, wT):
        """:math:`p(T) = \\frac{2}{|\\Omega|}(u(T) - c, 0)` into ``P`` (exact in Q1: both are Q1 functions)."""
        self.P.interpolate(ufl.as_vector([2.0 / self.area * (wT[0] - self.clean), 0.0]))

    def gradient(self, trajectory):
        r"""Step :math:`p` from :math:`T` to 0 along ``trajectory`` (:math:`w^0..w^N`); return the flat gradient.

        :math:`\int_{t_n}^{t_{n+1}} G\,dt \approx \frac{\tau}{2}(G(w^n,p^n) + G(w^{n+1},p^{n+1}))` per stage.
        """
        ev, dm = self.ev, self.ev.discrete
        N, tau = ev.steps, float(ev.dt)
        grads = [np.zeros(dm.size) for _ in dm.model.stages]
        with stop_annotating():
            self.terminal(trajectory[N])
            last = None                                      # (stage, G at the left node of the last interval)
            for n in range(N - 1, -1, -1):
                k = dm.stage_of_step(n, N)
                if last is not None and last[0] == k:
                    Gb = last[1]
                else:                                        # P holds p^{n+1}
                    self.Wn.assign(trajectory[n + 1])
                    Gb = self._integrand_value(k)
                self.Pb.assign(self.P)
                self.Wb.assign(trajectory[n + 1])
                self.Wn.assign(trajectory[n])
                self._solvers[k].solve()                     # P <- p^n
                Ga = self._integrand_value(k)
                grads[k] += 0.5 * tau * (Ga + Gb)
                last = (k, Ga)
        return np.concatenate(grads)


# ------------------------------------------------------------------------------ three gradients
class GradientProblem:
    r"""One (clean, noisy) pair on one mesh: :math:`J(q)` and :math:`\nabla J` three ways.

    ``refine`` halves h that many times (the images enter as their bilinear interpolants), ``steps``/``time``
    override the model's horizon, ``scheme`` is the forward time scheme, ``adjoint_theta`` and ``state_term``
    the continuous adjoint's (see :class:`ContinuousAdjoint`). Solves are direct (:data:`DIRECT_SOLVER`) unless
    ``solver_parameters`` says otherwise. ``mesh`` replaces the structured image mesh (it needs
    ``mesh.image_shape``).
    """

    def __init__(self, model, clean, noisy, *, refine=0, steps=None, time=None, scheme="semi-implicit",
                 adjoint_theta=1.0, state_term="explicit", solver_parameters=None, mesh=None):
        self.state_term = state_term
        sp = {**DIRECT_SOLVER, **(solver_parameters or {})}
        if scheme == "semi-implicit":
            sp = linear_solver_parameters(sp)
        self.data = DatasetLoss(model, [(clean, noisy)], refine=refine, mesh=mesh, solver_parameters=sp,
                                time=time, steps=steps, scheme=scheme, misfit="L2")
        self.ev = self.data.ev
        self.clean, self.noisy = self.data.data[0]
        self.x0 = pack(model)
        self.adjoint_theta, self._sp = adjoint_theta, sp
        self._adjoint = None
        self.timings = {}

    def _x(self, x):
        return self.x0 if x is None else np.asarray(x, dtype=float)

    def set(self, x=None):
        self.data.set(self._x(x))

    def misfit(self):
        """:math:`\\frac{1}{|\\Omega|}\\int(u - c)^2dx` of the current ``ev.w`` (``DatasetLoss``'s)."""
        return self.data.misfit(self.clean)

    def loss(self, x=None):
        """:math:`J(q)`, nothing recorded."""
        return self.data.loss(self._x(x))

    def trajectory(self, x=None):
        """Forward run without annotation, keeping every state :math:`w^0, \\dots, w^N`."""
        self.set(x)
        ev = self.ev
        with stop_annotating():
            ev.set_initial(self.noisy)
            states = [fd.Function(ev.W).assign(ev.w_old)]
            ev.run(callback=lambda n, steps: states.append(fd.Function(ev.W).assign(ev.w)))
        return states

    def continuous_gradient(self, x=None):
        """(J, dJ) from the hand-derived adjoint IBVP (:class:`ContinuousAdjoint`)."""
        t0 = _time.perf_counter()
        if self._adjoint is None:
            self._adjoint = ContinuousAdjoint(self.ev, self.clean, self.adjoint_theta, self._sp,
                                              self.state_term, area=self.data.area)
        states = self.trajectory(x)
        with stop_annotating():
            J = float(self.misfit())
        g = self._adjoint.gradient(states)
        self.timings["continuous"] = _time.perf_counter() - t0
        return J, g

    def discrete_gradient(self, x=None):
        """(J, dJ) from pyadjoint: the exact gradient of the discrete J (``DatasetLoss.loss_and_gradient``)."""
        t0 = _time.perf_counter()
        J, g = self.data.loss_and_gradient(self._x(x))
        self.timings["discrete"] = _time.perf_counter() - t0
        return J, g

    def fd_gradient(self, x=None, eps=1e-6, indices=None):
        """Central differences :math:`(J(q+h e_i) - J(q-h e_i))/2h`, :math:`h = \\epsilon\\max(1,|q_i|)`."""
        t0 = _time.perf_counter()
        x = self._x(x)
        idx = range(len(x)) if indices is None else indices
        g = np.full(len(x), np.nan)
        for i in idx:
            h = eps * max(1.0, abs(x[i]))
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            g[i] = (self.loss(xp) - self.loss(xm)) / (2 * h)
        self.set(x)
        self.timings["fd"] = _time.perf_counter() - t0
        return g


def _problem(model, clean, noisy, refine, steps, kwargs):
    return GradientProblem(model, clean, noisy, refine=refine, steps=steps, **kwargs)


def continuous_gradient(model, clean, noisy, refine=0, steps=None, **kwargs):
    """dJ/dq (flat, as :func:`~fem_crossdiff.learning.parametrisation.pack`) by the continuous adjoint; see
    :class:`GradientProblem`."""
    return _problem(model, clean, noisy, refine, steps, kwargs).continuous_gradient()[1]


def discrete_gradient(model, clean, noisy, refine=0, steps=None, **kwargs):
    """dJ/dq (flat) by pyadjoint's discrete adjoint; see :class:`GradientProblem`."""
    return _problem(model, clean, noisy, refine, steps, kwargs).discrete_gradient()[1]


def fd_gradient(model, clean, noisy, refine=0, steps=None, eps=1e-6, **kwargs):
    """dJ/dq (flat) by central finite differences of :math:`J`; see :class:`GradientProblem`."""
    return _problem(model, clean, noisy, refine, steps, kwargs).fd_gradient(eps=eps)
