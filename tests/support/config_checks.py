"""The configuration tests' one way to see what the parser refuses, with no secret in any message."""

import pytest

from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError


def config_problems(configuration: dict, secret: str) -> list[str]:
    """The problems ``config.parse`` reports for ``configuration`` (it must refuse it); none quotes ``secret``."""
    with pytest.raises(ConfigError) as caught:
        config.parse(configuration)
    assert all(secret not in problem for problem in caught.value.problems)
    return caught.value.problems
