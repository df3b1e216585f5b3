"""Shared fixtures."""
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture
def real_bse_path():
    """Path of the real BSE micrograph in ``../shared``; skips when absent."""
    path = SHARED_REAL / "bse_cement_paste_B.png"
    if not path.exists():
        pytest.skip(f"real micrograph not available: {path} is absent (../shared not beside the clone)")
    return path


@pytest.fixture
def real_bse_image(real_bse_path):
    """The real BSE micrograph as a (800, 800) uint8 array."""
    from skimage import io

    img = io.imread(real_bse_path)
    if img.ndim == 3:
        img = img[..., 0]
    return np.ascontiguousarray(img.astype(np.uint8))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
