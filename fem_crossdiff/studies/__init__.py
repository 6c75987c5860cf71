"""Verification: the hand-derived continuous adjoint (:mod:`.continuous_adjoint`), manufactured solutions and
self-convergence (:mod:`.manufactured`), the adjoint and refinement studies (:mod:`.adjoint`,
:mod:`.refinement`), a region of interest on an unstructured gmsh mesh (:mod:`.roi`), their data and models
(:mod:`.cases`), tables (:mod:`.tables`) and figures (:mod:`.plots`). Results: ``demos/STUDIES.md``."""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "QUICK_LEVELS": "cases", "STUDY_COUNTS": "cases", "STUDY_LEVELS": "cases", "MESHES": "cases", "OUT": "cases",
    "STUDY_MODELS": "cases", "study_model": "cases", "study_pair": "cases",
    "adjoint_study": "adjoint", "adjoint_tables": "adjoint", "gradients": "adjoint",
    "run_adjoint_study": "adjoint",
    "GradientProblem": "continuous_adjoint", "relative_gap": "continuous_adjoint",
    "plot_adjoint_study": "plots", "plot_refinement_study": "plots",
    "refinement_study": "refinement",
    "roi_denoise": "roi", "roi_mesh": "roi",
    "eoc": "tables", "format_table": "tables",
})
