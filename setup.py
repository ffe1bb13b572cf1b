"""The one thing pyproject.toml cannot say: the package list is found (simulator*) *and* names
``simulator.scenario.shipped``, which ``[tool.setuptools.package-dir]`` maps to the top-level
``scenarios/`` folder, so the wheel ships those files as package data without a copy."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["simulator*"]), "simulator.scenario.shipped"])
