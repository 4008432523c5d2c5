"""Write one recipe file per cell of the SimCMF paper's Tables 1–3 and alignment ablation.

    python recipes/make_recipes.py            # rewrites recipes/table*/ and recipes/ablation/

The cells, their settings and the paper's numbers live in ``aims.baselines.paper_grid``;
``tests/test_recipes.py`` checks that the files here are exactly what this script writes.
"""

from __future__ import annotations

from pathlib import Path

from aims.baselines.paper_grid import write_recipe_files


def main() -> None:
    root = Path(__file__).resolve().parent
    paths = write_recipe_files(root)
    print(f"{len(paths)} recipe files under {root}")


if __name__ == "__main__":
    main()
