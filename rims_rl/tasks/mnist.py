"""Sequential MNIST with resolution generalisation (RIM paper Table 2).

Images are resized (bilinear, antialiased) and fed one pixel per step, row by row; the model is
trained at 14x14 and tested at 16x16, 19x19 and 24x24 (same digits, more steps). The loader reads the
standard IDX files (``*-ubyte`` or ``*-ubyte.gz``) from a directory the user gives.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models import MnistModel
from .task import SupervisedTask, to_model_device

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, chosen by the ``.gz`` suffix).

    :param path: the file
    :return: the array with the file's shape and dtype
    """
    path = Path(path)
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {array.size} values")
    return array.reshape(shape)


def save_idx(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``path`` ends in ``.gz``); used by tests.

    :param array: uint8, int8, >i2, >i4, >f4 or >f8 values
    :param path: the file
    """
    array = np.asarray(array)
    codes = {
        np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k for k, v in _IDX_DTYPES.items()
    }
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; allowed: uint8, int8, int16, int32, float32, float64")
    header = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(dtype).tobytes()
    path = Path(path)
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as f:
        f.write(payload)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist(directory: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST images and labels from the standard IDX files in ``directory``.

    :param directory: folder with ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``
        (``split="test"``) or the ``train-*`` pair (``split="train"``)
    :param split: ``"train"`` or ``"test"``
    :return: images uint8 [N, 28, 28], labels int64 [N]
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    directory = Path(directory)
    paths = [_find(directory, stem) for stem in _FILES[split]]
    if not directory.is_dir() or None in paths:
        looked = ", ".join(f"{s}[.gz]" for s in _FILES[split])
        raise FileNotFoundError(f"MNIST {split} files not found in {str(directory)!r}: looked for {looked}")
    images, labels = load_idx(paths[0]), load_idx(paths[1])
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"MNIST files in {directory} disagree: images {images.shape}, labels {labels.shape}")
    return images, labels.astype(np.int64)


def resize_images(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Resize images to ``size`` x ``size`` (bilinear, antialiased) and scale to [0, 1].

    :param images: uint8 [N, S0, S0] (or float in [0, 1])
    :param size: output side S
    :return: float32 [N, S, S]
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = F.interpolate(x.unsqueeze(1), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.squeeze(1).clamp_(0.0, 1.0)


def to_pixel_sequence(images: torch.Tensor) -> torch.Tensor:
    """:param images: [B, S, S] -> pixels in reading order, [T = S*S, B]"""
    return images.flatten(1).t().contiguous()


@dataclass
class MnistOptions:
    """:param data_dir: folder holding the IDX files (required)
    :param split: IDX split to read (``"test"``: the 10k t10k files, the only ones used here)
    :param train_count: the first ``train_count`` images train; the rest (up to ``test_count``) test
    :param test_count: images held out for testing; ``None`` = all the rest
    :param train_size: training resolution (paper: 14)
    :param test_sizes: test resolutions (paper: 16, 19, 24; the training one is added as a check)
    :param embed_size: pixel embedding size E (``Linear(1, E)``)
    """

    data_dir: str | None = None
    split: str = "test"
    train_count: int = 8000
    test_count: int | None = None
    train_size: int = 14
    test_sizes: tuple = (14, 16, 19, 24)
    embed_size: int = 16

    def __post_init__(self):
        self.test_sizes = tuple(self.test_sizes)
        if self.data_dir is None:
            raise ValueError("the mnist task needs data_dir: a folder with the MNIST IDX files")


class MnistTask(SupervisedTask):
    """Sequential MNIST: classify from the last step's output; accuracy at each test resolution.

    The data are the first ``train_count`` images of the chosen IDX split for training and the
    following ones for testing (here: the 10k test split as 8k train / 2k test).
    """

    name = "mnist"
    Options = MnistOptions

    def __init__(self, options=None, core=None):
        super().__init__(options, core)
        o = self.options
        images, labels = load_mnist(o.data_dir, o.split)
        if not 0 < o.train_count < len(images):
            raise ValueError(f"train_count must be in 1..{len(images) - 1}, got {o.train_count}")
        end = len(images) if o.test_count is None else o.train_count + o.test_count
        self.train_images = resize_images(images[: o.train_count], o.train_size)
        self.train_labels = torch.from_numpy(labels[: o.train_count])
        self.test_images = {s: resize_images(images[o.train_count : end], s) for s in o.test_sizes}
        self.test_labels = torch.from_numpy(labels[o.train_count : end])

    def make_model(self) -> MnistModel:
        return MnistModel(self.core, self.options.embed_size)

    def sample_batch(self, batch_size: int, generator: torch.Generator):
        """:return: pixels [T = S*S, B] at ``train_size``, labels long [B] (images drawn with replacement)"""
        idx = torch.randint(0, len(self.train_labels), (batch_size,), generator=generator)
        return to_pixel_sequence(self.train_images[idx]), self.train_labels[idx]

    def loss(self, model, batch):
        pixels, labels = to_model_device(model, *batch)
        logits = model(pixels)[0][-1]
        return F.cross_entropy(logits, labels), {"acc": (logits.argmax(-1) == labels).float().mean().item()}

    @torch.no_grad()
    def evaluate(self, model, generator: torch.Generator) -> dict[str, float]:
        out = {}
        (labels,) = to_model_device(model, self.test_labels)
        for size, images in self.test_images.items():
            logits = torch.cat([model(*to_model_device(model, to_pixel_sequence(x)))[0][-1] for x in images.split(500)])
            out[f"test{size}/acc"] = (logits.argmax(-1) == labels).float().mean().item()
            out[f"test{size}/ce"] = F.cross_entropy(logits, labels).item()
        return out
