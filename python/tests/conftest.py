import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(os.environ.get("HYPERATTN_CLI", ROOT / "build" / "tools" / "hyperattn"))
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the hyperattn CLI is missing at {path} (build it first: bash scripts/build.sh)")
        pytest.skip(f"the hyperattn CLI is not built at {path}")
    return str(path)
