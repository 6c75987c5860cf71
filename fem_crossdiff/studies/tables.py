"""Numbers of the studies: observed orders of convergence, plain-text tables, JSON-ready results (numpy only)."""
import numpy as np

__all__ = ["eoc", "format_table", "h_differences", "jsonable"]


def eoc(errors):
    """Observed orders :math:`\\log_2(e_{k-1}/e_k)` for errors at successively halved sizes."""
    e = np.asarray(errors, dtype=float)
    return np.log2(e[:-1] / e[1:])


def format_table(headers, rows, floatfmt=".3e"):
    """Plain-text table: ``rows`` of values (floats formatted with ``floatfmt``, one format or one per column;
    None shown as "-")."""
    fmts = list(floatfmt) if isinstance(floatfmt, (list, tuple)) else [floatfmt] * len(headers)

    def cell(x, fmt):
        if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
            return "-"
        if isinstance(x, (float, np.floating)):
            return format(float(x), fmt or ".3e")
        return str(x)
    cells = [[cell(x, f) for x, f in zip(row, fmts)] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(str(v).rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])



def h_differences(levels):
    r""":math:`\|e_r - e_{r+1}\|/\|g_{disc}\|` with :math:`e = g_{cont} - g_{disc}` (how fast the gap settles in h)."""
    e = [lv["cont"] - lv["disc"] for lv in levels]
    ref = np.linalg.norm(levels[-1]["disc"])
    return np.array([np.linalg.norm(e[r] - e[r + 1]) / ref for r in range(len(e) - 1)])



def jsonable(res):
    def conv(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        return x
    return {k: [{kk: conv(vv) for kk, vv in lv.items()} for lv in v] for k, v in res.items()}
