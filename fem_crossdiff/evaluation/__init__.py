"""Where the models stand: the public test-crop table (:mod:`.testcrops`), held-out validation on training pictures
(:mod:`.validation`, how models are chosen), the classic models' tuned parameters (:mod:`.tuned`), the speed
and memory benchmarks (:mod:`.bench`) and deblurring, inpainting and upscaling beside their anchors
(:mod:`.restoration`)."""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "run_bench": "bench", "run_gradient_bench": "bench",
    "evaluate": "testcrops", "print_table": "testcrops",
    "tuned_classic": "tuned", "tuned_levels": "tuned", "tuned_tv_weight": "tuned",
    "HELDOUT": "validation", "print_validation": "validation", "validate": "validation",
    "evaluate_task": "restoration", "print_task_table": "restoration", "heldout": "restoration",
    "print_heldout": "restoration",
})
