"""Data: data sets (``spacefold.data.datasets``: MNIST IDX, digits, synthetic, npz, image
folders) and loading a model or a data set named by a string (``spacefold.data.load``).

The data sets' names are re-exported here (``from spacefold.data import load_dataset``).
"""

from .datasets import (
    DATASETS,
    DataError,
    Dataset,
    load_dataset,
    load_digits,
    load_mnist,
    make_synthetic,
    read_idx,
    write_idx,
)
from .load import IMG_EXTENSIONS, fit_input_shape, load_data, load_model

__all__ = [
    "Dataset",
    "DataError",
    "DATASETS",
    "load_dataset",
    "load_mnist",
    "load_digits",
    "make_synthetic",
    "read_idx",
    "write_idx",
    "load_model",
    "load_data",
    "fit_input_shape",
    "IMG_EXTENSIONS",
]
