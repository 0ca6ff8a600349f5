from liger_bench.components.find_frontier.component import find_frontier

__all__ = ["find_frontier"]
