r"""Projected Adam (Kingma & Ba, *Adam: a method for stochastic optimization*, ICLR 2015), in numpy, for the
stochastic training of :func:`~.training.train` (``optimiser="adam"``).

With the minibatch gradient :math:`g_t` at the iterate :math:`x_{t-1}` (:math:`t = 1, 2, \dots`), decay rates
:math:`\beta_1, \beta_2 \in [0, 1)`, step size :math:`\eta_t` and :math:`\epsilon > 0`:

.. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \qquad (m_0 = v_0 = 0), \\
    \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t)
    \quad\text{(bias correction: the moments start at zero)}, \\
    x_t &= \Pi_{[a, b]}\big(x_{t-1} - \eta_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)\big),

element-wise, :math:`\Pi_{[a,b]}` the projection on the box (``np.clip``): every iterate lies in the box, so the
box's certificate (uniform ellipticity, :mod:`.parametrisation`) holds throughout. Each coordinate moves by about
:math:`\eta_t` per step (:math:`|\hat m_t/\sqrt{\hat v_t}| \le 1` roughly), whatever the gradient's scale: the step
size is in the units of the parameters the optimiser sees.

The step size follows a schedule over the :math:`T` steps of the run (:func:`step_size`): ``"constant"``,
:math:`\eta_t = \eta`, or ``"cosine"`` (Loshchilov & Hutter, SGDR, 2017, without restarts),
:math:`\eta_t = \tfrac12\eta\,(1 + \cos(\pi (t-1)/T))`, from :math:`\eta` down to nearly 0.

The state (:math:`m, v, t`) is plain data (:meth:`Adam.state`, :meth:`Adam.from_state`): JSON keeps floats exactly,
so a run resumed from it takes the same steps as one never interrupted.
"""
import math

import numpy as np

from ..errors import InputError
from .settings import LR_SCHEDULES as SCHEDULES

__all__ = ["Adam", "step_size", "SCHEDULES"]


def step_size(lr, schedule, step, total):
    r""":math:`\eta_t` of ``schedule`` for step ``step`` (1-based) of ``total`` (see the module's docstring)."""
    if schedule == "constant":
        return float(lr)
    if schedule == "cosine":
        return 0.5 * lr * (1.0 + math.cos(math.pi * (step - 1) / max(total, 1)))
    raise InputError(f"--lr-schedule {schedule}: expected one of {', '.join(SCHEDULES)}")


class Adam:
    """Projected Adam on ``size`` parameters in the box ``[lo, hi]`` (arrays; ``lo == hi`` freezes a parameter)."""

    def __init__(self, lo, hi, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lo, self.hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(self.lo.shape)
        self.v = np.zeros(self.lo.shape)
        self.t = 0

    def step(self, x, g, lr):
        """The next iterate from ``x`` with gradient ``g`` and step size ``lr`` (the moments and count advance)."""
        g = np.asarray(g, dtype=float)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m_hat = self.m / (1 - self.beta1 ** self.t)
        v_hat = self.v / (1 - self.beta2 ** self.t)
        return np.clip(np.asarray(x, dtype=float) - lr * m_hat / (np.sqrt(v_hat) + self.eps), self.lo, self.hi)

    def state(self):
        """The moments and the step count as JSON-ready data."""
        return dict(m=self.m.tolist(), v=self.v.tolist(), t=self.t)

    def load(self, state, where="the training state"):
        """Restore :meth:`state`'s data, refusing (naming ``where``) moments of the wrong length or not finite."""
        try:
            m, v, t = np.asarray(state["m"], dtype=float), np.asarray(state["v"], dtype=float), state["t"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: no readable Adam moments (m, v, t)") from None
        if (m.shape != self.m.shape or v.shape != self.v.shape or not np.all(np.isfinite(m))
                or not np.all(np.isfinite(v)) or np.any(v < 0) or isinstance(t, bool) or not isinstance(t, int)
                or t < 0):
            raise InputError(f"{where}: Adam moments of {self.m.size} finite numbers (v >= 0) and a step count "
                             ">= 0 expected (the training state is corrupt: restore it, or remove it to start afresh)")
        self.m, self.v, self.t = m, v, t
        return self

    @classmethod
    def from_state(cls, lo, hi, state, where="the training state"):
        """An :class:`Adam` in the box ``[lo, hi]`` with :meth:`state`'s moments and count."""
        return cls(lo, hi).load(state, where)
