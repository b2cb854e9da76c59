"""The kernel benchmark's Markdown report: one table per thread count, with ratios."""
from __future__ import annotations

from .. import common, machine
from .cases import IMPLS


def _row_ratios(r):
    med = {k: (v["median"] if v else None) for k, v in r["impls"].items()}
    return {
        "numba_vs_numpy": common.ratio(med["numba"], med["numpy"]),
        "numba_vs_torch": common.ratio(med["numba"], med["torch"]),
        "minidl_vs_torch": common.ratio(med["minidl"], med["torch"]),
        "numpy_vs_naive": common.ratio(med["numpy"], med["naive"]),
    }


def render(info, info_end, rows, args, cupy_note) -> str:
    out = ["# Kernel benchmark", "", machine.machine_markdown(info), "",
           machine.load_note(info, info_end), "",
           f"float32. Median of {args.rounds} interleaved rounds; each sample is a block of "
           f"calls lasting ≥ {args.block_seconds * 1e3:g} ms (naive loops: one call, "
           f"≤ 3 rounds). Columns: naive Python loops (small shape only), vectorised NumPy "
           f"(`*_reference`), Numba (`*_numba`), the minidl layer/optimizer as a user calls "
           f"it (forward rows, *layer fwd+bwd* rows against torch.nn + autograd, Adam.step), "
           f"PyTorch, CuPy. conv2d via im2col + the layer's GEMMs, so numpy vs numba isolates "
           f"im2col/col2im. Ratios: time / time, below 1 means the first is faster.",
           "", f"CuPy: {cupy_note}", ""]
    for threads in args.threads:
        sel = [r for r in rows if r["threads"] == threads]
        out += [f"## {threads} thread{'s' if threads > 1 else ''}", ""]
        table = []
        for r in sel:
            ratios = _row_ratios(r)
            cells = [r["op"], r["shape"]]
            for impl in IMPLS:
                st = r["impls"][impl]
                cells.append(common.fmt_time(st["median"]) if st else "—")
            cells += [common.fmt_num(ratios["numba_vs_numpy"], 2),
                      common.fmt_num(ratios["numba_vs_torch"], 2),
                      common.fmt_num(ratios["minidl_vs_torch"], 2)]
            table.append(cells)
        out.append(common.markdown_table(
            ["op", "shape", *IMPLS, "numba/numpy", "numba/torch", "minidl/torch"], table))
        out.append("")
    notes = sorted({f"{r['op']}, {r['shape']}: {n}" for r in rows for n in r.get("notes", [])})
    if notes:
        out += ["Empty cells:", ""] + [f"- {n}" for n in notes] + [""]
    worst = max((st["max_rel_diff"] for r in rows for st in r["impls"].values()
                 if st and st.get("max_rel_diff") is not None), default=None)
    out.append(f"Every implementation's output was compared before timing with the NumPy "
               f"twin's (the minidl layer's in *layer fwd+bwd* rows): largest difference "
               f"{common.fmt_sci(worst)} relative to the largest output value (float32; "
               f"max abs and rel per cell in kernels.json).")
    return "\n".join(out)
