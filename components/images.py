"""Base images of the components, resolved once at import (compile) time from liger_bench.versions."""

from liger_bench.versions import image

CPU_IMAGE = image("cpu")
CUDA_IMAGE = image("cuda")
