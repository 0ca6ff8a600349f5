from liger_bench.components.download_model.component import download_model

__all__ = ["download_model"]
