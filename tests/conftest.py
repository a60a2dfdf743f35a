from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (CI has it); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED
