"""Model inspection: output sizes, a per-layer shape trace, receptive fields."""
from .shapes import conv_output_size, receptive_field, shape_trace  # noqa: F401
