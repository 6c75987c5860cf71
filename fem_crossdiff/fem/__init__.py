"""The finite-element layer (Firedrake): images ↔ Q1 functions on the structured image mesh (:mod:`.functions`),
a model's UFL (:mod:`.forms`), the time schemes and :class:`Evolution` (:mod:`.evolution`), a step as one
pyadjoint block (:mod:`.taping`), solver defaults (:mod:`.solvers`), the numpy API :func:`denoise`
(:mod:`.arrays`), and :func:`deblur`, :func:`inpaint`, :func:`upscale` (:mod:`.restoration`, data terms in :mod:`.dataterms`)."""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "denoise": "arrays", "split_fast_path": "arrays",
    "deblur": "restoration", "inpaint": "restoration", "upscale": "restoration",
    "Evolution": "evolution", "EvolutionError": "evolution", "SCHEMES": "evolution",
    "DiscreteModel": "forms",
    "function_to_grid": "functions", "function_to_image": "functions", "grid_to_function": "functions",
    "image_mesh": "functions", "image_to_function": "functions", "pixel_space": "functions", "prolong": "functions",
    "LINEAR_SOLVER": "solvers", "NEWTON_SOLVER": "solvers",
})
