"""Batch transforms: pad-crop shifts content per image, flip mirrors, normalisation is exact."""

from __future__ import annotations

import pytest
import torch

from lightning_compress.data.augment import augment, normalize, random_crop, random_hflip


def _batch(n: int = 64, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, size, size), generator=gen, dtype=torch.uint8)  # no zeros: padding shows


def _offsets(images: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    """For each image, the crop offset (dy, dx) that reproduces ``out`` from the zero-padded input."""
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    h, w = images.shape[-2:]
    found = []
    for i in range(images.shape[0]):
        hits = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                if torch.equal(padded[i, :, dy:dy + h, dx:dx + w], out[i])]
        assert hits, f"image {i} is not a crop of its padded input"
        found.append(hits[0])
    return found


def test_random_crop_is_a_per_image_shifted_window():
    images = _batch()
    out = random_crop(images, 4, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    offsets = _offsets(images, out, 4)
    assert len(set(offsets)) > 10  # offsets are drawn per image
    assert any(o != (4, 4) for o in offsets) and not torch.equal(out, images)  # content moved
    shifted = [i for i, o in enumerate(offsets) if o[0] == 0]  # shifted down by 4: top rows are zero padding
    assert shifted and all(int(out[i, :, :4].max()) == 0 for i in shifted)


def test_random_crop_is_seeded_and_padding_zero_is_identity():
    images = _batch()
    a = random_crop(images, 2, torch.Generator().manual_seed(3))
    b = random_crop(images, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(random_crop(images, 0), images)
    with pytest.raises(ValueError, match="`padding` must be an int >= 0"):
        random_crop(images, -1)


def test_random_crop_works_on_float_and_non_square():
    images = torch.rand(5, 2, 6, 10)
    out = random_crop(images, 3)
    assert out.shape == images.shape
    _offsets(images, out, 3)


def test_hflip_mirrors_each_image_or_leaves_it():
    images = _batch()
    assert torch.equal(random_hflip(images, 1.0), images.flip(-1))
    assert torch.equal(random_hflip(images, 0.0), images)
    out = random_hflip(images, 0.5, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], images[i].flip(-1)) for i in range(len(images))]
    kept = [torch.equal(out[i], images[i]) for i in range(len(images))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_normalize_per_channel():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 2, 1, 1).contiguous()
    out = normalize(images, (0.5, 0.0), (0.5, 2.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0].flatten(), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(out[:, 1].flatten(), torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(images, (0.5,), (0.5,))


def test_augment_combines_and_can_be_switched_off():
    images = _batch()
    assert torch.equal(augment(images, crop_padding=0, flip=False), images)
    out = augment(images, crop_padding=4, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and not torch.equal(out, images)


def test_non_batch_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop(torch.zeros(3, 8, 8, dtype=torch.uint8), 1)
