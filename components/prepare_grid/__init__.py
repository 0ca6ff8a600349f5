from liger_bench.components.prepare_grid.component import prepare_grid

__all__ = ["prepare_grid"]
