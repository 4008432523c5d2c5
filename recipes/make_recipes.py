"""Write one recipe file per cell of the SimCMF paper's Tables 1–3, alignment ablation and
Table 6 (the RGB-X systems).

    python recipes/make_recipes.py            # rewrites recipes/table*/ and recipes/ablation/

The cells, their settings and the paper's numbers live in ``aims.baselines.paper_grid``;
``tests/test_recipes.py`` checks that the files here are exactly what this script writes.
A cell whose recipe file this install cannot read back (an RGB-X system whose strategy is
not registered) is left out and listed.
"""

from __future__ import annotations

from pathlib import Path

from aims.baselines.paper_grid import write_recipe_files


def main() -> None:
    root = Path(__file__).resolve().parent
    from aims.baselines.paper_grid import all_cells

    paths = write_recipe_files(root)
    print(f"{len(paths)} recipe files under {root}")
    written = {p.relative_to(root).with_suffix("").as_posix() for p in paths}
    for cell in all_cells():
        if cell.name not in written:
            print(f"not written (its strategy {cell.strategy!r} is not registered here): {cell.name}")


if __name__ == "__main__":
    main()
