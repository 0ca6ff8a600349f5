from liger_bench.components.start_tracking.component import start_tracking

__all__ = ["start_tracking"]
