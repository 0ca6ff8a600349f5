from liger_bench.components.analyze_results.component import analyze_results

__all__ = ["analyze_results"]
