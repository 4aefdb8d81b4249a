"""simcse-ko-repro: the importable library behind the DVC stages.

Stages in ``stages/`` are thin entry points; everything they do lives here as
small modules of plain functions with explicit arguments.
"""

__version__ = "0.1.0"
