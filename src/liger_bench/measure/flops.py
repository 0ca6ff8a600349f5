"""The two sides of MFU: a model's training FLOPs per token, and the dense bf16 peak of known GPUs.

Properties of the model and the hardware, fixed before the first step; ``metrics`` multiplies each
step's padded tokens by ``FlopModel.per_token`` and divides the step's FLOP rate by the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' datasheets. Matched by
# substring of the CUDA device name, most specific first. Override with TrainConfig.peak_tflops.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("A6000", 155.0),
)


def peak_tflops_for(gpu_name: str) -> float:
    """Dense bf16 peak of a GPU by name, or 0.0 when it is not in the table (MFU then unreported)."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in gpu_name.lower():
            return tflops
    return 0.0


def model_flops_per_token(n_params_non_embedding: int, n_layers: int, hidden_size: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N for the weights plus 12·L·h·s for attention (PaLM, appendix B).

    N excludes the input embedding (a lookup) and includes the LM head. The attention term counts
    the full s×s score matrix, without a causal discount.
    """
    return 6.0 * n_params_non_embedding + 12.0 * n_layers * hidden_size * seq_len


@dataclass(frozen=True)
class FlopModel:
    """The sizes MFU needs; FLOPs per token depend on each step's padded sequence length."""

    n_params_non_embedding: int
    n_layers: int
    hidden_size: int

    def per_token(self, seq_len: int) -> float:
        """Training FLOPs per token at ``seq_len`` (see ``model_flops_per_token``)."""
        return model_flops_per_token(self.n_params_non_embedding, self.n_layers, self.hidden_size, seq_len)
