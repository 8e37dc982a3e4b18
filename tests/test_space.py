"""The Space's front matter agrees with what the repository installs and tests."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def front_matter() -> dict[str, str | list[str]]:
    """The README's YAML front matter: ``key: value`` lines and ``key:`` followed by ``- item`` lines."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert block, "README.md starts with a front matter block"
    fields: dict[str, str | list[str]] = {}
    key = None
    for line in block.group(1).splitlines():
        if line.startswith("  - ") and key is not None:
            fields.setdefault(key, [])
            fields[key].append(line[4:].strip())
        else:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip().strip('"')
            if value:
                fields[key] = value
    return fields


def pins(lines: list[str], package: str) -> list[str]:
    return [line.split("==", 1)[1].strip() for line in lines if re.match(rf"{package}\s*==", line)]


def test_gradio_is_pinned_to_the_sdk_version():
    sdk = front_matter()["sdk_version"]
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    assert pins(requirements, "gradio") == [sdk]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert pins([d.split(";")[0] for d in project["optional-dependencies"]["app"]], "gradio") == [sdk]


def test_python_version_is_the_one_the_tests_run_on():
    assert front_matter()["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_license_hardware_and_tags():
    fields = front_matter()
    assert fields["license"] == "mit"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert fields["suggested_hardware"] in ("cpu-basic", "cpu-upgrade")  # the app is built for CPU Spaces
    assert isinstance(fields["tags"], list) and len(fields["tags"]) >= 3
