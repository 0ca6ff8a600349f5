from liger_bench.components.download_dataset.component import download_dataset

__all__ = ["download_dataset"]
