"""Input pipelines: :class:`BatchLoader` over arrays and :func:`image_dataset_from_directory`."""
from .image_dataset import ImageDirectoryDataset, image_dataset_from_directory  # noqa: F401
from .loader import BatchLoader  # noqa: F401
