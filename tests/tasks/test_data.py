"""Data properties of the three tasks: copying targets and gaps, IDX round trip and resizing, ball physics."""

import gzip

import numpy as np
import pytest
import torch

from rims_rl.tasks import (
    apply_curtain,
    copying_batch,
    copying_metrics,
    load_idx,
    load_mnist,
    render_balls,
    resize_images,
    save_idx,
    simulate_balls,
    to_pixel_sequence,
)
from rims_rl.tasks.balls import BallsOptions, curtain_side
from rims_rl.tasks.mnist import MnistTask


# ---------------------------------------------------------------- copying
@pytest.mark.parametrize("gap", [0, 50, 200])
def test_copying_target_is_the_input_symbols_after_the_gap(gap):
    g = torch.Generator().manual_seed(0)
    inputs, targets, mask = copying_batch(16, copy_length=10, gap=gap, num_symbols=8, generator=g)
    assert inputs.shape == targets.shape == mask.shape == (2 * 10 + gap + 1, 16)
    symbols = inputs[:10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert torch.equal(targets[-10:], symbols)  # the target is the input symbols, in order
    assert (targets[:-10] == 0).all() and mask[-10:].all() and not mask[:-10].any()
    assert (inputs[10 : 10 + gap] == 0).all()  # the gap is exactly `gap` blanks
    assert (inputs[10 + gap] == 9).all()  # then the delimiter
    assert (inputs[11 + gap :] == 0).all()


def test_copying_batches_are_seeded():
    a = copying_batch(4, generator=torch.Generator().manual_seed(3))[0]
    b = copying_batch(4, generator=torch.Generator().manual_seed(3))[0]
    c = copying_batch(4, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_copying_rejects_bad_sizes():
    with pytest.raises(ValueError, match="gap"):
        copying_batch(4, gap=-1)
    with pytest.raises(ValueError, match="copy_length"):
        copying_batch(4, copy_length=0)


def test_copying_metrics_count_errors_per_sequence():
    inputs, targets, mask = copying_batch(4, copy_length=3, gap=2, num_symbols=4)
    logits = torch.nn.functional.one_hot(targets, 6).float() * 50
    m = copying_metrics(logits, targets, mask)
    assert m["ce"] < 1e-6 and m["copy_acc"] == 1.0 and m["symbol_acc"] == 1.0
    logits[-1, 0] = torch.nn.functional.one_hot((targets[-1, 0] % 4) + 1, 6).float() * 50  # one wrong symbol
    m = copying_metrics(logits, targets, mask)
    assert m["copy_acc"] == 0.75 and m["symbol_acc"] == pytest.approx(11 / 12) and m["ce"] > 1.0
    # per position: the one wrong symbol's loss spread over all T * B positions instead of the 3 * B copied ones
    assert m["ce_all"] == pytest.approx(m["ce"] * 3 / len(targets), rel=1e-4)


# ---------------------------------------------------------------- MNIST files
@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    a = (np.random.default_rng(0).random((5, 4, 3)) * 100).astype(dtype)
    save_idx(a, tmp_path / name)
    b = load_idx(tmp_path / name)
    assert b.shape == a.shape and np.array_equal(b, a)
    raw = (gzip.open if name.endswith(".gz") else open)(tmp_path / name, "rb").read()
    assert raw[:4] == bytes([0, 0, {np.uint8: 8, np.int32: 0x0C, np.float32: 0x0D}[dtype], 3])


def test_idx_rejects_a_non_idx_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(tmp_path / "bad")


def _digit_images(n=40, seed=0):
    """Synthetic 28x28 'digits': a bar whose orientation is the label, so a label survives resizing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[:28, :28] - 13.5
    images = []
    for lab in labels:
        angle = np.pi * lab / 10
        d = np.abs(-np.sin(angle) * xx + np.cos(angle) * yy)
        images.append(np.clip((3 - d) * 80, 0, 255) * (np.hypot(xx, yy) < 11))
    return np.array(images, dtype=np.uint8), labels.astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
    images, labels = _digit_images()
    save_idx(images, tmp_path / "t10k-images-idx3-ubyte.gz")
    save_idx(labels, tmp_path / "t10k-labels-idx1-ubyte")  # one raw, one compressed
    return tmp_path


def test_load_mnist_reads_the_standard_files(mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(labels, _digit_images()[1])


def test_load_mnist_names_the_files_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[.gz\], t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path / "missing", "train")


def test_resize_keeps_the_digit_and_its_label(mnist_dir):
    task = MnistTask({"data_dir": str(mnist_dir), "train_count": 30, "test_sizes": (14, 16, 24)}, {"model": "lstm"})
    assert len(task.test_labels) == 10 and torch.equal(
        task.test_labels, torch.from_numpy(_digit_images()[1][30:]).long()
    )
    base = task.test_images[14].flatten(1)
    for size in (16, 24):
        imgs = task.test_images[size]
        assert imgs.shape == (10, size, size) and 0 <= imgs.min() and imgs.max() <= 1
        back = resize_images(imgs, 14).flatten(1)  # resize back: the same digit, not another one
        corr = torch.corrcoef(torch.cat([back, base]))[:10, 10:]
        assert (corr.diagonal() > 0.9).all()
        assert (corr.argmax(1) == torch.arange(10)).all() or (corr.diagonal() >= corr.max(1).values - 1e-6).all()
    seq = to_pixel_sequence(task.test_images[16])
    assert seq.shape == (256, 10) and torch.equal(seq[17], task.test_images[16][:, 1, 1])  # row-major order


# ---------------------------------------------------------------- bouncing balls
def test_balls_stay_in_the_box_and_conserve_energy():
    radius = 0.08
    pos, vel = simulate_balls(6, 200, 8, radius=radius, speed=0.04, rng=np.random.default_rng(0))
    assert pos.shape == vel.shape == (200, 8, 6, 2)
    assert (pos >= radius - 1e-9).all() and (pos <= 1 - radius + 1e-9).all()
    energy = (vel**2).sum((-1, -2))  # [T, B], equal masses
    assert np.allclose(energy, energy[0], rtol=1e-9, atol=0)
    speeds = np.linalg.norm(vel, axis=-1)
    assert np.abs(speeds - speeds[0]).max() > 0.01  # balls did hit each other (walls keep each speed)
    moved = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
    assert moved.max() <= speeds.max() + 1e-9  # no teleporting: a frame moves a ball at most its speed


def test_balls_rarely_overlap():
    radius = 0.08
    pos, _ = simulate_balls(8, 100, 8, radius=radius, rng=np.random.default_rng(1))
    d = np.linalg.norm(pos[:, :, :, None] - pos[:, :, None], axis=-1) + np.eye(8) * 9
    assert d.min() > 1.5 * radius  # collisions are resolved within a substep


def test_render_draws_disks_of_the_right_area():
    pos = np.array([[[0.25, 0.25], [0.7, 0.6]]])
    frame = render_balls(pos, frame_size=32, radius=0.1)[0]
    assert frame.shape == (32, 32) and frame.min() == 0 and frame.max() == 1
    assert frame.sum() == pytest.approx(2 * np.pi * (0.1 * 32) ** 2, rel=0.05)
    assert frame[int(0.6 * 32), int(0.7 * 32)] == 1 and frame[int(0.25 * 32), int(0.7 * 32)] == 0  # [y, x]


def test_simulate_rejects_bad_settings():
    with pytest.raises(ValueError, match="radius"):
        simulate_balls(3, 5, 2, radius=0.6)
    with pytest.raises(ValueError, match="num_balls"):
        simulate_balls(0, 5, 2)


def test_curtain_hides_exactly_its_square_in_every_frame():
    """The curtain is invisible (van Steenkiste et al. 2018's data): its pixels become background, 0; the
    rest of every frame is untouched, and each sequence keeps its own square over time."""
    frames = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.1  # no pixel is 0 before
    top_left = torch.tensor([[1, 2], [5, 0]])  # (row, column) per sequence
    out = apply_curtain(frames, top_left, side=3)
    hidden = torch.zeros(2, 8, 8, dtype=torch.bool)
    hidden[0, 1:4, 2:5] = True  # rows 1-3, columns 2-4
    hidden[1, 5:8, 0:3] = True
    assert out.shape == frames.shape
    assert (out[:, hidden] == 0).all()
    assert torch.equal(out[:, ~hidden], frames[:, ~hidden])
    assert (frames > 0).all()  # the input is not changed in place


def test_curtain_erases_a_ball_behind_it_and_keeps_one_beside_it():
    pos = np.array([[[0.3, 0.3], [0.75, 0.75]]])  # [T=1, K=2, 2], (x, y)
    frames = torch.from_numpy(render_balls(pos, frame_size=20, radius=0.1))[:, None]  # [1, 1, 20, 20]
    out = apply_curtain(frames, torch.tensor([[2, 2]]), side=curtain_side(20, 0.4))  # pixels 2-9 cover ball 1
    assert curtain_side(20, 0.4) == 8 and curtain_side(64, 0.4375) == 28
    assert out[0, 0, :10, :10].sum() == 0 and frames[0, 0, :10, :10].sum() > 5
    assert torch.equal(out[0, 0, 10:, 10:], frames[0, 0, 10:, 10:])  # the other ball is as it was


def test_curtain_rejects_bad_settings():
    frames = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="curtain side must be in 1..8 pixels, got 9"):
        apply_curtain(frames, torch.tensor([[0, 0]]), side=9)
    with pytest.raises(ValueError, match="top_left must be"):
        apply_curtain(frames, torch.tensor([[0, 6]]), side=3)  # would stick out of the frame
    with pytest.raises(ValueError, match=r"curtain must be a fraction of the frame side in \(0, 1\), got 1.5"):
        BallsOptions(curtain=1.5)
    with pytest.raises(ValueError, match=r"curtain_balls must be positive integers \(or empty\), got \(0,\)"):
        BallsOptions(curtain_balls=(0,))
