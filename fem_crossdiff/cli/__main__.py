"""``python -m fem_crossdiff.cli …``, as ``fem-crossdiff …`` (what ``mpiexec -n 2 python -m …`` runs)."""
import sys

from . import main

sys.exit(main())
