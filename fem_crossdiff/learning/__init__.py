"""Learning stable models by adjoint gradients: the parametrisation and its box bounds (:mod:`.parametrisation`),
training patches (:mod:`.pairs`), the data-set loss and its gradient (:mod:`.loss`; by pyadjoint's tape or the
reverse sweep of :mod:`.sweep`), and L-BFGS-B training with resume files (:mod:`.training`)."""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "LEARNING_SOLVER": "loss", "DatasetLoss": "loss", "MultiResolutionLoss": "loss",
    "dataset_reduced_functional": "loss",
    "MISFITS": "settings", "OBJECTIVES": "settings",
    "training_pairs": "pairs",
    "BOUNDS": "parametrisation", "FLOOR": "parametrisation", "bounds": "parametrisation",
    "fit_rbf": "parametrisation", "learned_template": "parametrisation", "pack": "parametrisation",
    "unpack": "parametrisation", "with_modulation": "parametrisation", "with_psi": "parametrisation",
    "checkpointed_gradient": "sweep",
    "ResumeFile": "training", "train": "training",
})
