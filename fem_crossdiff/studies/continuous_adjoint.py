r"""The continuous adjoint of the learning problem (optimise-then-discretise), beside pyadjoint's discrete one.

For one pair :math:`(c, f)` and :math:`J = \frac{1}{|\Omega|}\int_\Omega (u(T) - c)^2\,dx`, the adjoint
:math:`p = (p_1, \dots, p_n)` solves, backwards from :math:`p(T) = \frac{2}{|\Omega|}(u(T) - c,\ 0, \dots)`,

.. math:: -(\partial_t p, \varphi) + (D(w)\nabla\varphi, \nabla p) + (D'(w)[\varphi]\,\nabla w, \nabla p)
          - (R'(w)[\varphi], p) = 0 \qquad\forall\varphi ,

(the natural boundary condition is built in; for the built-in family :math:`-(R'(w)[\varphi], p) =
\lambda(\varphi_1, p_1) + \mu(\varphi_2, p_2) - (\psi'(v)\varphi_2, p_1)`), and for a parameter :math:`q` of stage
:math:`k` acting on :math:`I_k\subset[0,T]`

.. math:: \frac{dJ}{dq} = -\int_{I_k}\!\int_\Omega (\partial_q D\,\nabla w) : \nabla p
                          - \partial_q R\cdot p \;dx\,dt .

See ``demos/continuous_adjoint.md`` for the derivation. Every derivative here — :math:`D'(w)[\varphi]`,
:math:`R'(w)[\varphi]`, :math:`\partial_q D`, :math:`\partial_q R` — is taken by UFL (``ufl.derivative``) from the
model's own definition (:meth:`~fem_crossdiff.fem.forms.DiscreteModel.D`, ``reaction``), so the same code serves
the built-in family and any user model, with any number of components; no coefficient is written out by hand.
:class:`ContinuousAdjoint` solves this with its own
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

__all__ = ["ContinuousAdjoint", "GradientProblem", "continuous_gradient", "discrete_gradient", "fd_gradient",
           "DIRECT_SOLVER", "relative_gap"]

#: Direct solves: gradients reproducible to round-off (what finite differences and rate studies need).
DIRECT_SOLVER = {"mat_type": "aij", "ksp_type": "preonly", "pc_type": "lu",
                 "snes_rtol": 1e-13, "snes_atol": 1e-15, "snes_stol": 0.0}


def relative_gap(g, ref):
    """:math:`\\|g - g_{ref}\\| / \\|g_{ref}\\|` (Euclidean norms of the flat vectors)."""
    return float(np.linalg.norm(np.asarray(g) - np.asarray(ref)) / np.linalg.norm(ref))


class ContinuousAdjoint:
    r"""The adjoint IBVP discretised on its own: θ-scheme backwards in time, trapezoidal gradient quadrature.

    With the stored forward states :math:`w^n` and :math:`B_k(w;\varphi,p) = (D\nabla\varphi,\nabla p)
    + (D'(w)[\varphi]\nabla w,\nabla p) - (R'(w)[\varphi], p)` (stage ``k`` of the interval :math:`[t_n, t_{n+1}]`;
    :meth:`B`):

    .. math:: (p^n,\varphi) + \tau\theta B_k(w^n;\varphi,p^n) = (p^{n+1},\varphi)
              - \tau(1-\theta)B_k(w^{n+1};\varphi,p^{n+1}),

    ``theta=1`` is implicit Euler (first order), ``theta=0.5`` Crank–Nicolson (second order).
    ``state_term="explicit"`` (default) moves the :math:`D'(w)` part of :math:`B_k` and that of the explicit
    reaction (:math:`\psi'` of the built-in family) to the
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
        nst = ev.discrete.nstages
        self._solvers = [self._make_solver(k) for k in range(nst)]
        forms = [self._gradient_form(k) for k in range(nst)]
        self._grad_assemblers = [get_assembler(F) for F in forms]   # each form preprocessed once
        self._grad_out = [fd.Cofunction(F.arguments()[0].function_space().dual()) for F in forms]

    # -- forms: every derivative taken by UFL from the model's own definition ---------------------------
    def B(self, W, phi, p, k, parts=("diffusion", "state", "reaction")):
        r"""The adjoint operator :math:`B_k(w;\varphi,p)`, the derivative of the state operator
        :math:`A(w)(p) = (D(w)\nabla w, \nabla p) - (R(w, f), p)` in the direction :math:`\varphi`, as a UFL form
        (``phi`` the test function); ``parts`` selects the transposed diffusion :math:`(D(w)\nabla\varphi,\nabla p)`,
        the state term (:math:`(D'(w)[\varphi]\nabla w,\nabla p)` and the explicit reaction's
        :math:`-(E'(w)[\varphi], p)`) and the (linearly implicit) reaction's :math:`-(R'(w)[\varphi], p)`."""
        dm = self.ev.discrete
        D = dm.D(W, k)
        R, E = dm.reaction_parts(W, self.ev.f, k)
        form = 0
        if "diffusion" in parts:
            form += ufl.inner(ufl.dot(D, ufl.grad(phi)), ufl.grad(p))
        if "state" in parts:
            form += ufl.inner(ufl.dot(ufl.derivative(D, W, phi), ufl.grad(W)), ufl.grad(p))
            if E is not None:                                     # lagged like D'(w) (explicit in the state)
                form += -ufl.inner(ufl.derivative(E, W, phi), p)
        if "reaction" in parts:
            form += -ufl.inner(ufl.derivative(R, W, phi), p)
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

    def _gradient_form(self, k):
        r""":math:`-\partial A(w)(p)/\partial P_k` tested with the DG0 functions of the stage's parameter space: one
        assembly gives, per cell, the derivative of the integrand with respect to every parameter; summed over the
        cells (:meth:`DiscreteModel.gradient_vector`) it is the integral (the parameters are constant in space)."""
        dm, W, p = self.ev.discrete, self.Wn, self.P
        A = (ufl.inner(ufl.dot(dm.D(W, k), ufl.grad(W)), ufl.grad(p)) - ufl.inner(dm.reaction(W, self.ev.f, k), p))
        P = dm.stage_functions[k]
        return -ufl.derivative(A * self.dx, P, fd.TestFunction(P.function_space()))

    def _integrand_value(self, k):
        r""":math:`-\int_\Omega \partial A/\partial q` for every parameter of stage ``k`` at the state in ``Wn`` and the
        adjoint in ``P``."""
        return self.ev.discrete.gradient_vector([self._grad_assemblers[k].assemble(tensor=self._grad_out[k])])

    # -- solving --------------------------------------------------------------------------------
    def terminal(self, wT):
        """:math:`p(T) = \\frac{2}{|\\Omega|}(u(T) - c, 0, \\dots)` into ``P`` (exact in Q1: both are Q1 functions)."""
        zeros = [0.0] * (self.ev.discrete.components - 1)
        self.P.interpolate(ufl.as_vector([2.0 / self.area * (wT[0] - self.clean), *zeros]))

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
